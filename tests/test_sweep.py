"""The sweep engine against independent references: single-model training, other grids, other
engine settings and the unpadded computation. Tiny grids; float64 (conftest enables x64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbof import engine, stats, store
from jaxbof.experiments import classification as sweep
from jaxbof.experiments.classification import metrics
from jaxbof.experiments.classification.grid import Cell, Grid, Protocol, cell_coords
from jaxbof.experiments.classification.step import Param, Stop, run

F64 = jnp.float64
BASE = Grid(
    n=(12, 16),
    d_over_n=(1.0, 3.0),
    gamma=(0.3,),
    alpha=(0.1,),
    noise_rate=(0.1,),
    width=(4,),
    seeds=2,
)
PROTO = Protocol(n_test=200)


def _by_cell(rows):
    return {sweep.cell_of(r): r for r in rows}


def _same(r1, r2):
    for k in sweep.COLUMNS:
        a, b = r1[k], r2[k]
        if isinstance(a, float) and math.isnan(a):
            assert isinstance(b, float) and math.isnan(b), k
        else:
            assert a == b, (k, a, b)


@pytest.fixture(scope="module")
def base_rows():
    rows, stats = sweep.run_grid(BASE, PROTO, dtype=F64)
    return rows, stats


def test_every_cell_once_and_converged(base_rows):
    rows, stats = base_rows
    assert sorted(_by_cell(rows)) == sorted(BASE.cells())
    assert len(rows) == len(BASE.cells()) == stats.models
    assert all(r["converged"] and not r["diverged"] for r in rows)
    assert all(r["train_error"] == 0.0 for r in rows)  # zero_error stopping rule
    assert stats.flops_executed >= stats.flops_useful > 0


def test_adding_cells_and_changing_engine_changes_nothing(base_rows):
    """Determinism from coordinates: more cells (a new n, a direct-parameterization cell, a
    third seed), another slot count and chunk size give bitwise the same rows for the shared
    cells. The added cells are few and converge fast (seed 1 of the direct cell runs to
    max_steps): every compile is paid per bucket, so this adds one bucket, not four."""
    rows, _ = base_rows
    new_n = Grid(
        n=(10,), d_over_n=(0.4,), gamma=(0.3,), alpha=(0.1,), noise_rate=(0.1,), width=(4,), seeds=3
    ).cells()
    new_seed = Grid(
        n=(12,), d_over_n=(1.0,), gamma=(0.3,), alpha=(0.1,), noise_rate=(0.1,), width=(4,), seeds=3
    ).cells()[2]
    cells = BASE.cells() + [new_n[0], new_n[2], new_seed]
    extra, _ = sweep.run_cells(cells, PROTO, engine.Engine(slots=3, chunk=7), dtype=F64)
    assert {r["param"] for r in extra} == {"gram", "direct"}
    assert sorted(_by_cell(extra)) == sorted(cells)
    got = _by_cell(extra)
    for cell, row in _by_cell(rows).items():
        _same(row, got[cell])


def test_sweep_equals_single_model_run(base_rows):
    """Each row equals an independent single-model computation at the cell's exact shape. The
    rows checked are those of the cells at d = n, which the sweep pads to its bucket's d = 3n
    (both seeds: one shape, so one compile per program here)."""
    rows, _ = base_rows
    rows = [r for r in rows if r["n"] == 12 and r["d"] == 12]
    assert len(rows) == 2
    key = jax.random.PRNGKey(PROTO.seed)
    measure_train, measure_weights = (
        jax.jit(sweep.measure_train),
        jax.jit(sweep.measure_weights, static_argnames="n_test"),
    )
    for row in rows:
        cell = sweep.cell_of(row)
        keys = sweep.cell_keys(key, jnp.asarray(cell_coords(cell)))
        sc = jax.tree.map(lambda x: x[0], sweep.scalars([cell], keys[None], PROTO, np.float64))
        slot = PREPARE(sc, n_pad=cell.n, d_pad=cell.d, width=cell.width, param=Param.GRAM)
        state, _ = RUN(slot.problem, slot.state)
        assert int(state.steps) == row["steps"]
        out = measure_train(slot._replace(state=state))
        assert float(out["train_error"]) == row["train_error"]
        np.testing.assert_allclose(float(out["hinge_loss"]), row["hinge_loss"], rtol=1e-9)
        S = metrics.noise_factor(out["WWt"], out["Wv"], cell.d)
        w = measure_weights(
            out["WWt"],
            out["Wv"],
            S,
            slot.problem.a_m,
            slot.problem.hyper.alpha,
            slot.extras.gamma,
            slot.extras.test_key,
            n_test=PROTO.n_test,
        )
        np.testing.assert_allclose(float(w["w_norm"]), row["w_norm"], rtol=1e-9)
        assert abs(float(w["test_error"]) - row["test_error"]) <= 1.0 / PROTO.n_test


PREPARE = jax.jit(sweep.prepare, static_argnames=("n_pad", "d_pad", "width", "param"))
RUN = jax.jit(run)


def test_padded_prepare_equals_unpadded_exactly():
    """Sampled at a padded shape and cropped, a slot is the exact-shape slot: same tree, and
    every leaf has the same dtype, shape and bits. Training then runs the same compiled program
    on the same inputs, so the trained states agree too (no training run needed here;
    test_sweep_equals_single_model_run trains exact-shape slots against the padded sweep)."""
    cell = Cell(9, 20, 20 / 9, 0.25, 0.1, 0.2, 6, 1)
    keys = sweep.cell_keys(jax.random.PRNGKey(3), jnp.asarray(cell_coords(cell)))
    for dtype in (np.float32, np.float64):
        sc = jax.tree.map(lambda x: x[0], sweep.scalars([cell], keys[None], PROTO, dtype))
        for param in (Param.GRAM, Param.DIRECT):
            exact = PREPARE(sc, n_pad=9, d_pad=20, width=6, param=param)
            big = PREPARE(sc, n_pad=23, d_pad=300, width=6, param=param)
            cropped = sweep.crop(big, 9, 20)
            assert jax.tree.structure(exact) == jax.tree.structure(cropped)
            for a, b in zip(jax.tree.leaves(exact), jax.tree.leaves(cropped)):
                assert (a.dtype, a.shape, a.weak_type) == (b.dtype, b.shape, b.weak_type)
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gram_and_direct_sweeps_agree(base_rows):
    rows, _ = base_rows
    direct, _ = sweep.run_grid(BASE, Protocol(n_test=200, param=Param.DIRECT), dtype=F64)
    got = _by_cell(direct)
    for cell, row in _by_cell(rows).items():
        other = got[cell]
        assert row["param"] == "gram" and other["param"] == "direct"
        assert other["steps"] == row["steps"]
        for k in ("w_norm", "snr", "hinge_loss", "A_min", "wstar_norm"):
            np.testing.assert_allclose(other[k], row[k], rtol=1e-7, err_msg=k)


def test_max_steps_guard_flags_runs():
    grid = Grid(n=(12,), d_over_n=(2.0,), gamma=(0.3,), width=(4,), seeds=2)
    rows, _ = sweep.run_grid(grid, Protocol(n_test=50, max_steps=3, stop=Stop.ZERO_LOSS), dtype=F64)
    assert all(r["steps"] == 3 and not r["converged"] for r in rows)
    summary = stats.aggregate(rows, by=("n",), value="test_error")
    (s,) = summary.values()
    assert s.flagged == 2 and s.count == 0


def test_zero_loss_rule_reaches_margin_one():
    grid = Grid(n=(12,), d_over_n=(3.0,), gamma=(0.3,), width=(4,), seeds=1)
    rows, _ = sweep.run_grid(grid, Protocol(n_test=50, stop=Stop.ZERO_LOSS), dtype=F64)
    (row,) = rows
    assert row["converged"] and row["min_margin"] >= 1.0 and row["hinge_loss"] == 0.0


def test_interrupted_sweep_keeps_reported_rows_and_resumes(tmp_path, base_rows):
    rows, _ = base_rows
    config = {"experiment": {"grid": BASE, "protocol": PROTO}}

    class Stopped(Exception):
        pass

    calls = []

    with store.ResultsWriter(tmp_path, config, sweep.COLUMNS) as w:

        def on_rows(new):
            w.write(new)
            calls.append(len(new))
            raise Stopped  # the process dies right after the first batch is saved

        with pytest.raises(Stopped):
            sweep.run_grid(BASE, PROTO, on_rows=on_rows, dtype=F64)
    saved = store.load_results(tmp_path)
    assert len(saved) == calls[0] > 0
    with store.ResultsWriter(tmp_path, config, sweep.COLUMNS) as w:
        rest, _ = sweep.run_grid(
            BASE, PROTO, skip=sweep.completed_cells(saved), on_rows=w.write, dtype=F64
        )
    final = store.load_results(tmp_path)
    assert len(rest) == len(BASE.cells()) - len(saved)
    assert sorted(_by_cell(final)) == sorted(BASE.cells())
    ref = _by_cell(rows)
    for cell, row in _by_cell(final).items():
        _same(row, ref[cell])


def test_grid_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="alpha=1.5"):
        Grid(n=(10,), d_over_n=(1.0,), alpha=(1.5,))
    with pytest.raises(ValueError, match="gamma"):
        Grid(n=(2,), d_over_n=(1.0,), gamma=("5/n",))
    with pytest.raises(ValueError, match="n=0"):
        Grid(n=(0,), d_over_n=(1.0,))
