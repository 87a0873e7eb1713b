"""The optimizer study: the classification and regression experiments under GD, momentum and
Adam, every part in its own results directory, compared run by run with GD.

study     the parts, their cells and the root config.json (JAX: imported on first use)
run       `jaxbof reproduce optimizers`
figures   the table of paired differences and the comparison picture (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred, lazy_api

_SUBMODULES = ("study", "run", "figures")
_study = deferred("jaxbof.experiments.optimizers.run:study")
_figures = deferred("jaxbof.experiments.optimizers.figures:figures")  # matplotlib: on use


PLUGIN = Plugin(
    name="optimizers",
    description="both experiments under GD, momentum and Adam, paired run by run with GD",
    reproduce=(
        Reproduce("optimizers", "both experiments under GD, momentum and Adam", study=_study),
    ),
    figures=_figures,
)


__getattr__ = lazy_api(__name__, _SUBMODULES, "study")  # the API, on first use
