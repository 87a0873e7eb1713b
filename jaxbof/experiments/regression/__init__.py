"""Regression (Park et al., 2024): two-layer ReLU networks trained by gradient flow on the square
loss in the NTK regime, antisymmetric initialisation, data on the sphere; the excess risk split
into approximation and estimation error.

program   the engine.Experiment and presets; the API (re-exported from the modules below)
grid      Cell, Protocol, `cells`, targets, recording times, keys, the schema's columns
data      sampling a cell: points, target, noise, test points, init (device)
step      forward pass, gradient, halting, the GD / optax step (device)
measure   the report's device programs and the host-side closed forms (float64)
schema    the schema constants: coordinates, noise kinds, inits (JAX-free)
figures   the decomposition, staircase and NTK-regime pictures (JAX-free)
cli       its `jaxbof sweep regression` flags and table
claims    its checkable claims P1-P4 (`jaxbof verify`; JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred, lazy_api
from jaxbof.experiments.regression import claims as _claims
from jaxbof.experiments.regression import cli as _cli

_SUBMODULES = ("program", "grid", "data", "step", "measure", "schema", "figures", "cli", "claims")
_figures = deferred("jaxbof.experiments.regression.figures:figures")  # matplotlib: on use


PLUGIN = Plugin(
    name="regression",
    description="two-layer ReLU networks trained by gradient flow on the square loss, NTK regime",
    paper="Park et al., 2024",
    add_arguments=_cli.add_arguments,
    from_args=_cli.from_args,
    experiment=_cli.experiment,
    reproduce=(Reproduce("park-regression", _cli.DESCRIPTION, study=_cli.park_study),),
    table=_cli.table,
    figures=_figures,
    engine=_cli.engine,
    claims=_claims.CLAIMS,
)


__getattr__ = lazy_api(__name__, _SUBMODULES, "program")  # the API, on first use
