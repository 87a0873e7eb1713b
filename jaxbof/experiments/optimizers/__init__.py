"""The optimizer study: the classification and regression experiments under GD, momentum and
Adam, every part in its own results directory, compared run by run with GD.

study     the parts, their cells and the root config.json (JAX: imported on first use)
run       `jaxbof reproduce optimizers`
figures   the table of paired differences and the comparison picture (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce

_SUBMODULES = ("study", "run", "figures")


def _run(args, host) -> int:
    from jaxbof.experiments.optimizers.run import run

    return run(args, host)


def _figures(directory, config, out) -> list[str]:
    from jaxbof.experiments.optimizers.figures import figures

    return figures(directory, config, out)


PLUGIN = Plugin(
    name="optimizers",
    description="both experiments under GD, momentum and Adam, paired run by run with GD",
    reproduce=(Reproduce("optimizers", "both experiments under GD, momentum and Adam",
                         run=_run),),
    figures=_figures)


def __getattr__(name: str):
    """The study's API (study.py), imported on first use."""
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(importlib.import_module(f"{__name__}.study"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
