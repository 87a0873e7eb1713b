"""Classification (Karhadkar et al., NeurIPS 2024): leaky-ReLU networks trained by GD on the
hinge loss of noisy labels; benign overfitting once d = Omega(n).

program   the engine.Experiment: device programs, measurement, run_grid/run_cells
grid      Grid, Protocol, Cell (the sweep's axes and static settings)
data      samplers of the training and test sets (label noise, signal direction)
metrics   errors, margins, SNR, max-margin norm, the theory's constants
presets   the published Figure 1 and Figure 2 protocols
"""

_SUBMODULES = ("program", "grid", "data", "metrics", "presets")


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
