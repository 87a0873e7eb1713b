"""`jaxbof new NAME [--dir DIR]`: a pip-installable package holding a user's own theorem, ready
to edit. It has the shape of the minimal plug-in (tests/toy_plugin): a Cell NamedTuple, init,
step, report, a Schema and a PLUGIN registered under the entry-point group
"jaxbof.experiments", a test that runs jaxbof's engine on a few cells and checks every row
against the closed form, and a short README:

    DIR/pyproject.toml              the entry point NAME = "PACKAGE:PLUGIN"; depends on jaxbof
    DIR/README.md                   pip install -e ., jaxbof sweep NAME, jaxbof plot, pytest
    DIR/PACKAGE/__init__.py         the experiment (GD on 1-D least squares: a closed form)
    DIR/tests/test_PACKAGE.py       every row against the closed form; beyond lr s = 2 it fails

PACKAGE is NAME with '-' made '_' (my-theorem: my_theorem). Imports no JAX.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from pathlib import Path

__all__ = ["new", "package_name"]

_NAME = re.compile(r"[A-Za-z]([A-Za-z0-9_-]*[A-Za-z0-9])?")
ALLOWED = (
    "a letter, then letters, digits, '-' and '_', ending in a letter or digit (e.g. my-theorem)"
)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "__NAME__"
version = "0.1.0"
description = "A theorem checked by experiment with jaxbof"
requires-python = ">=3.11"
dependencies = ["jaxbof>=__JAXBOF__"]

[project.optional-dependencies]
test = ["pytest"]

# `jaxbof sweep __NAME__`, `jaxbof plot DIR` find the experiment through this entry point
[project.entry-points."jaxbof.experiments"]
__NAME__ = "__PACKAGE__:PLUGIN"

[tool.setuptools]
packages = ["__PACKAGE__"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# __NAME__

A theorem checked by experiment with jaxbof: gradient descent with step lr on 1-D least squares
follows the closed form w_t = w* (1 - (1 - lr s)^t) and converges iff 0 < lr s < 2. Written by
`jaxbof new __NAME__`: make it yours in `__PACKAGE__/__init__.py` and `tests/test___PACKAGE__.py`.

    pip install -e ".[test]"
    jaxbof sweep __NAME__ --out runs/x
    jaxbof plot runs/x
    pytest

Installing registers the experiment `__NAME__` with jaxbof; the sweep runs the default grid in
seconds (flags: `jaxbof sweep __NAME__ --help`; `--lr 0.1,1,3` goes past the limit) into
runs/x/results.csv and draws runs/x/__NAME__.png, `plot` draws it again, and `pytest` checks
every row against the closed form.
"""

MODULE = '''\
"""__NAME__: a theorem checked by jaxbof (written by `jaxbof new __NAME__`; make it yours).

Gradient descent with step lr on L(w) = (1/2n) sum_i (w x_i - y_i)^2, x_i ~ N(0, 1),
y_i = 2 x_i + 0.1 e_i, from w_0 = 0 has the closed form

    w_t = w* (1 - (1 - lr s)^t),   s = mean(x^2),  w* = mean(x y) / s,

so |w_t - w*| = |w*| |1 - lr s|^t: it converges for 0 < lr s < 2 and moves away beyond.
`jaxbof sweep __NAME__ --out DIR` runs GRID; its flags (one per Cell field), table and figure
are jaxbof's defaults, derived from Cell and SCHEMA. tests/ checks the rows against the closed form.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof.contract import Experiment, Schema
from jaxbof.experiments import Plugin

N, STEPS = 32, 50  # points per data set, GD steps per run
GRID = {"lr": "0.1,0.5,1", "seed": "0:3"}  # the flags' defaults: a grid that runs in seconds


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


def init(key, cell: Cell, shape) -> Run:  # the cell's fields arrive as traced scalars
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (N,), cell.lr.dtype)
    y = 2 * x + 0.1 * jax.random.normal(ke, (N,), x.dtype)
    return Run(x, y, cell.lr, State(jnp.zeros((), x.dtype), jnp.zeros((), jnp.int32),
                                    jnp.zeros((), bool)))


def step(run: Run, state: State) -> State:  # one GD step; halt after STEPS or on overflow
    w = state.w - run.lr * jnp.mean((state.w * run.x - run.y) * run.x)
    return State(w, state.steps + 1, (state.steps + 1 >= STEPS) | ~jnp.isfinite(w))


def report(halted) -> list[list[dict]]:  # on the host: one list of rows per halted run
    out = []
    for run, cell in zip(halted.runs(), halted.cells):
        x, y = run.x.astype(float), run.y.astype(float)
        w, t = float(run.state.w), int(run.state.steps)
        s = np.mean(x * x)
        w_star = np.mean(x * y) / s
        exact = w_star * (1 - (1 - cell.lr * s) ** t)
        out.append([dict(lr=cell.lr, seed=cell.seed, steps=t, w=w, w_exact=exact, w_star=w_star,
                         lr_s=cell.lr * s, gap=abs(w - w_star) / abs(w_star),
                         error=abs(w - exact) / max(abs(w_star), abs(exact)),
                         diverged=not np.isfinite(w))])
    return out


SCHEMA = Schema({"lr": "float", "seed": "int", "steps": "int", "w": "float", "w_exact": "float",
                 "w_star": "float", "lr_s": "float", "gap": "float", "error": "float",
                 "diverged": "bool"}, flags={"diverged": True})

PLUGIN = Plugin("__NAME__", "1-D least squares by gradient descent", paper="closed form",
                experiment=lambda protocol, cells: Experiment(init, step, report, SCHEMA),
                cell=Cell, grid=GRID)
'''

TEST = '''\
"""__NAME__ against its closed form: a few cells on both sides of the stability limit lr s = 2,
run by jaxbof's engine; every row is checked. Run with `pytest`."""

import pytest

from jaxbof import engine

from __PACKAGE__ import PLUGIN, STEPS

TOL = 1e-3  # relative: float32 over STEPS steps


@pytest.fixture(scope="module")
def rows():
    cells = [PLUGIN.cell(lr, seed) for lr in (0.1, 0.5, 1.0, 3.0, 10.0) for seed in (0, 1)]
    rows, _ = engine.run(PLUGIN.experiment(PLUGIN.protocol, cells), cells, engine.Engine(slots=4))
    assert sorted((r["lr"], r["seed"]) for r in rows) == sorted(cells)  # one row per cell
    return rows


def closed_form(r):  # w_t = w* (1 - (1 - lr s)^t), from the row's own w*, lr s and t
    return r["w_star"] * (1 - (1 - r["lr_s"]) ** r["steps"])


def test_every_run_within_the_limit_follows_the_closed_form_towards_w_star(rows):
    stable = [r for r in rows if r["lr_s"] < 2]
    assert len(stable) >= 6, rows  # lr 0.1, 0.5 and 1 are within the limit for these data
    for r in stable:
        assert not r["diverged"] and r["steps"] == STEPS, r
        assert abs(r["w"] - closed_form(r)) <= TOL * abs(r["w_star"]), r
        assert r["gap"] == pytest.approx(abs(1 - r["lr_s"]) ** STEPS, rel=TOL, abs=TOL), r
        assert r["gap"] < 1, r  # closer to w* than w_0 = 0 is


def test_a_step_size_beyond_the_limit_moves_away_from_w_star_or_is_flagged(rows):
    unstable = [r for r in rows if r["lr_s"] > 2]
    assert len(unstable) >= 2, rows  # lr 10 is beyond the limit for any data here
    for r in unstable:
        assert r["diverged"] or r["gap"] > 1, r
        if not r["diverged"]:  # the closed form holds beyond the limit too
            assert abs(r["w"] - closed_form(r)) <= TOL * abs(closed_form(r)), r
    assert all(r["lr_s"] > 2 for r in rows if r["diverged"])  # no stable run is flagged
'''


def package_name(name: str) -> str:
    """The Python package of an experiment NAME: '-' made '_' (my-theorem: my_theorem)."""
    return name.replace("-", "_")


def _check(name: str, directory: Path) -> str:
    """The package name; ValueError (one line, naming the bad value) for a bad NAME or DIR."""
    from jaxbof import experiments

    if not _NAME.fullmatch(name):
        raise ValueError(f"new: NAME {name!r} is not a valid name; allowed: {ALLOWED}")
    package = package_name(name)
    if keyword.iskeyword(package):
        raise ValueError(
            f"new: NAME {name!r} would make the package {package!r}, a Python "
            f"keyword; allowed: {ALLOWED}, not a keyword"
        )
    known = experiments.names()
    if name in known:
        raise ValueError(
            f"new: NAME {name!r} is already an experiment (known: "
            f"{', '.join(known)}); choose a new name"
        )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin is not None:  # a namespace package (a bare dir) is fine
        raise ValueError(
            f"new: NAME {name!r} would make the package {package!r}, which is "
            f"already importable ({spec.origin}); choose a new name"
        )
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(
            f"new: --dir {str(directory)!r} exists and is not an empty directory; "
            "allowed: a new or empty directory"
        )
    return package


def new(name: str, directory: str | Path | None = None) -> list[Path]:
    """Write the package of experiment `name` into `directory` (default ./NAME); the written
    paths. ValueError (one line) for a NAME that is not a valid name, that of an existing
    experiment, or a directory that exists and is not empty."""
    from jaxbof import __version__

    directory = Path(name if directory is None else directory)
    package = _check(name, directory)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": MODULE,
        f"tests/test_{package}.py": TEST,
    }
    written = []
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            text.replace("__NAME__", name)
            .replace("__PACKAGE__", package)
            .replace("__JAXBOF__", __version__)
        )
        written.append(path)
    return written
