"""Regression (Park et al., 2024): two-layer ReLU networks trained by gradient flow on the square
loss in the NTK regime, antisymmetric initialisation, data on the sphere; the excess risk split
into approximation and estimation error.

program   the engine.Experiment, cells, presets, closed forms of the population flow
"""

_SUBMODULES = ("program",)


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
