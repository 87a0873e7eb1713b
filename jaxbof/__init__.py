"""jaxbof: benign overfitting in two-layer (leaky) ReLU networks, verified by experiment in JAX.

Public API (the command line `jaxbof` sits on top of it):

    from jaxbof import Grid, Protocol, Engine, run_grid
    rows, stats = run_grid(Grid(n=(50, 100), d_over_n=(1.0, 5.0), seeds=2), Protocol())

Experiments plug into one engine (`jaxbof.engine.run(experiment, cells)`) through the registry
`jaxbof.experiments` (name -> Plugin; other packages add theirs by entry point): the
classification experiment is `jaxbof.experiments.classification`, the regression one
`jaxbof.experiments.regression`, the CNN one (Kou et al. 2023) `jaxbof.experiments.cnn`.

Kernel instruments (modules): `jaxbof.ntk` (empirical NTKs of any model, structured two-layer
route, analytic infinite-width kernels, top Gram eigenpairs without the Gram), `jaxbof.eigsolve`
(LOBPCG and the p x p feature route for any Gram-vector product), `jaxbof.spectra` (eigenvalues
of dot-product kernels on the sphere), `jaxbof.concentration` (||H_M - H_inf||_op / ||H_inf||_op
against width) and `jaxbof.eigenlearning` (the predicted test, train and excess risk of kernel
ridge regression from a spectrum: kappa, learnabilities, noise amplification).

Update rules: `jaxbof.optim` (optax transformations; `Protocol(optimizer="momentum:0.9")`, or
any optax GradientTransformation, in either experiment; default plain GD).
"""

__version__ = "0.1.0"

from jaxbof import concentration, eigenlearning, eigsolve, ntk, optim, spectra, sphere
from jaxbof.engine import Engine, Experiment, SweepStats
from jaxbof.experiments.classification import run_cells, run_grid
from jaxbof.experiments.classification.data import Corruption, Signal, sample_test, sample_train
from jaxbof.experiments.classification.grid import Cell, Grid, Protocol
from jaxbof.experiments.classification.presets import FIG1, FIG1_QUICK, FIG2, FIG2_QUICK, preset
from jaxbof.experiments.classification.step import Param, Stop
from jaxbof.model import Outer, apply, init_weights, outer_weights

__all__ = [
    "Cell",
    "Corruption",
    "Engine",
    "Experiment",
    "FIG1",
    "FIG1_QUICK",
    "FIG2",
    "FIG2_QUICK",
    "Grid",
    "Outer",
    "Param",
    "Protocol",
    "Signal",
    "Stop",
    "SweepStats",
    "apply",
    "concentration",
    "eigenlearning",
    "eigsolve",
    "init_weights",
    "ntk",
    "optim",
    "outer_weights",
    "preset",
    "run_cells",
    "run_grid",
    "sample_test",
    "sample_train",
    "sphere",
    "spectra",
]
