"""Classification (Karhadkar et al., NeurIPS 2024): leaky-ReLU networks trained by GD on the
hinge loss of noisy labels; benign overfitting once d = Omega(n).

program   the engine.Experiment: device programs, measurement, run_grid/run_cells
grid      Grid, Protocol, Cell (the sweep's axes and static settings)
step      the hinge-loss GD step (DIRECT and GRAM parameterizations), stopping rules
data      samplers of the training and test sets (label noise, signal direction)
metrics   errors, margins, SNR, max-margin norm, the theory's constants
presets   the published Figure 1 and Figure 2 protocols
cells     the schema: columns and coordinates (JAX-free)
figures   heatmap, gamma curve, error against d/n and SNR (JAX-free)
cli       its `jaxbof sweep classification` flags and table
"""

from jaxbof.experiments import Plugin, Reproduce, deferred, lazy_api
from jaxbof.experiments.classification import claims as _claims
from jaxbof.experiments.classification import cli as _cli

_SUBMODULES = (
    "program",
    "grid",
    "data",
    "metrics",
    "presets",
    "cells",
    "figures",
    "cli",
    "step",
    "claims",
)
_figures = deferred("jaxbof.experiments.classification.figures:figures")  # matplotlib: on use


PLUGIN = Plugin(
    name="classification",
    description="leaky-ReLU networks trained by GD on the hinge loss of noisy labels",
    paper="Karhadkar et al., NeurIPS 2024",
    add_arguments=_cli.add_arguments,
    from_args=_cli.from_args,
    experiment=_cli.experiment,
    reproduce=(
        Reproduce(
            "karhadkar-fig1",
            "Figure 1: test error over (n, d/n), 550 trainings",
            study=_cli.preset_study("karhadkar-fig1"),
        ),
        Reproduce(
            "karhadkar-fig2",
            "Figure 2: test error against gamma at d = 2n",
            study=_cli.preset_study("karhadkar-fig2"),
        ),
    ),
    table=_cli.table,
    figures=_figures,
    claims=_claims.CLAIMS,
)


__getattr__ = lazy_api(__name__, _SUBMODULES, "program")  # the API, on first use
