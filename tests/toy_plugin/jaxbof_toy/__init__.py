"""A theorem from outside jaxbof, as small as one can be. Gradient descent with step lr on

    L(w) = (1/2n) sum_i (w x_i - y_i)^2,   x_i ~ N(0, 1),  y_i = 2 x_i + 0.1 e_i,

from w_0 = 0 has the closed form w_t = w* (1 - (1 - lr s)^t), s = mean(x^2), w* = mean(x y) / s:
it converges for lr < 2 / s and diverges beyond. pyproject.toml registers it, so that
`jaxbof sweep toy-linear --lr 0.1,1,2.5 --seed 0:3` runs it; its flags (one per Cell field),
table and figure are jaxbof's defaults, derived from Cell and SCHEMA.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof.contract import Claim, Criterion, Estimate, Experiment, Schema
from jaxbof.experiments import Plugin

N, STEPS = 32, 50  # points per data set, GD steps per run


class Cell(NamedTuple):  # one grid point; the engine folds every field into its keys
    lr: float
    seed: int


class State(NamedTuple):  # what the training loop carries; the engine reads steps and done
    w: jax.Array
    steps: jax.Array
    done: jax.Array


class Run(NamedTuple):  # one run on the device: its data, its step size and its state
    x: jax.Array
    y: jax.Array
    lr: jax.Array
    state: State


def init(key, cell: Cell, shape) -> Run:  # cell's fields arrive as traced scalars
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (N,), cell.lr.dtype)
    y = 2 * x + 0.1 * jax.random.normal(ke, (N,), x.dtype)
    return Run(x, y, cell.lr, State(jnp.zeros((), x.dtype), jnp.zeros((), jnp.int32),
                                    jnp.zeros((), bool)))


def step(run: Run, state: State) -> State:
    w = state.w - run.lr * jnp.mean((state.w * run.x - run.y) * run.x)
    return State(w, state.steps + 1, (state.steps + 1 >= STEPS) | ~jnp.isfinite(w))


def report(halted) -> list[list[dict]]:  # host side: one list of rows per halted run
    out = []
    for run, cell in zip(halted.runs(), halted.cells):
        x, y, w = run.x.astype(float), run.y.astype(float), float(run.state.w)
        s, w_star = np.mean(x * x), np.mean(x * y) / np.mean(x * x)
        exact = w_star * (1 - (1 - cell.lr * s) ** int(run.state.steps))
        out.append([dict(lr=cell.lr, seed=cell.seed, w=w, w_exact=exact, lr_s=cell.lr * s,
                         error=abs(w - exact) / abs(w_star), diverged=not np.isfinite(w))])
    return out


SCHEMA = Schema({"lr": "float", "seed": "int", "w": "float", "w_exact": "float",
                 "lr_s": "float", "error": "float", "diverged": "bool"}, flags={"diverged": True})


def agreement(rows, config, level) -> Estimate:  # |w - w_exact| / |w_exact| where lr s < 2
    from jaxbof.stats import t_interval

    return Estimate(*t_interval([abs(r["w"] - r["w_exact"]) / abs(r["w_exact"])
                                 for r in rows if r["lr_s"] < 2], level))


CLAIMS = (Claim("T1", "GD's iterates follow w_t = w* (1 - (1 - lr s)^t) where lr s < 2",
                "closed form", "toy-linear", agreement, Criterion(high=1e-4)),)

PLUGIN = Plugin("toy-linear", "1-D least squares by gradient descent", paper="closed form",
                experiment=lambda protocol, cells: Experiment(init, step, report, SCHEMA),
                cell=Cell, grid={"lr": "0.1,0.5,1", "seed": "0:3"}, claims=CLAIMS)
