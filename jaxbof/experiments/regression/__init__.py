"""Regression (Park et al., 2024): two-layer ReLU networks trained by gradient flow on the square
loss in the NTK regime, antisymmetric initialisation, data on the sphere; the excess risk split
into approximation and estimation error.

program   the engine.Experiment, cells, presets, closed forms of the population flow
schema    the schema constants: coordinates, noise kinds, inits (JAX-free)
figures   the decomposition, staircase and NTK-regime pictures (JAX-free)
cli       its `jaxbof sweep regression` flags and table
"""

from jaxbof.experiments import Plugin, Reproduce
from jaxbof.experiments.regression import cli as _cli

_SUBMODULES = ("program", "schema", "figures", "cli")


def _figures(directory, config, out) -> list[str]:
    from jaxbof.experiments.regression.figures import figures  # matplotlib: only when drawing

    return figures(directory, config, out)


PLUGIN = Plugin(
    name="regression",
    description="two-layer ReLU networks trained by gradient flow on the square loss, NTK regime",
    paper="Park et al., 2024",
    add_arguments=_cli.add_arguments, from_args=_cli.from_args, experiment=_cli.experiment,
    reproduce=(Reproduce("park-regression", _cli.DESCRIPTION, study=_cli.park_study),),
    table=_cli.table, figures=_figures, engine=_cli.engine)


def __getattr__(name: str):
    """The experiment's API (program.py and its submodules), imported on first use, so that
    importing the package (the registry, plots) never loads JAX."""
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name.startswith("__"):
        raise AttributeError(name)
    program = importlib.import_module(f"{__name__}.program")
    try:
        return getattr(program, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
