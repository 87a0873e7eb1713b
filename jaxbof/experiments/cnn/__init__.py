"""Signal against noise in a two-layer ReLU CNN (Kou et al., ICML 2023), with Cao et al.'s
ReLU^q variant (NeurIPS 2022): benign overfitting above n ||mu||^4 = C d sigma_p^4.

cells     cells, protocol and schema (JAX-free)
program   the engine.Experiment: Gram-path GD, projected test error (JAX)
boundary  the theory's boundary against the measured crossings (JAX-free)
figures   heatmaps with the boundary, signal against noise, error against ||mu|| (JAX-free)
cli       `jaxbof sweep cnn` flags, the kou-cnn and cao-cnn presets, the summary table
claims    C1-C4, the theorem's predictions checked on kou-cnn by `jaxbof verify` (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred, lazy_api
from jaxbof.experiments.cnn import claims as _claims
from jaxbof.experiments.cnn import cli as _cli

_SUBMODULES = ("cells", "program", "boundary", "figures", "cli", "claims")
_figures = deferred("jaxbof.experiments.cnn.figures:figures")  # matplotlib: on use


PLUGIN = Plugin(
    name="cnn",
    description="two-layer ReLU CNN on signal and noise patches, label noise",
    paper=_cli.PAPER,
    add_arguments=_cli.add_arguments,
    from_args=_cli.from_args,
    experiment=_cli.experiment,
    reproduce=(
        Reproduce(
            "kou-cnn",
            "Kou et al.'s published grid: 100 x 100 cells x 10 trainings",
            study=_cli.kou_study,
        ),
        Reproduce("cao-cnn", "Cao et al.'s ReLU^3 CNN over (||mu||, n)", study=_cli.cao_study),
    ),
    table=_cli.table,
    figures=_figures,
    engine=_cli.engine,
    claims=_claims.CLAIMS,
)


__getattr__ = lazy_api(__name__, _SUBMODULES, "program")  # the API, on first use
