"""The engine's guarantees against stalls: every program it runs is pure XLA (no collective, no
library kernel on CPU), checked at compile time, and a long wait on a device is reported with
what it waits on. The sweeps on several devices themselves run in tests/test_scale.py."""

import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxbof import engine
from jaxbof.experiments import classification, regression
from jaxbof.experiments.classification.grid import Cell, Protocol


def _compiled(fn, *args):
    return jax.jit(fn).lower(*args).compile()


def test_a_library_kernel_is_refused_on_cpu():
    """jnp.linalg.eigh lowers to LAPACK's batched kernel on CPU: the kernel that deadlocked
    two devices' programs on a 2-core machine (issue 14)."""
    x = jnp.eye(4)[None].repeat(3, 0)
    prog = _compiled(jnp.linalg.eigh, x)
    with pytest.raises(engine.ImpureProgram, match="eigh.*lapack|lapack.*syevd|library kernels"):
        engine.check_pure("eigh", prog, "cpu")
    assert engine.check_pure("matmul", _compiled(lambda a: a @ a, x), "cpu") is not None


def test_a_collective_is_refused():
    mesh = Mesh(np.array(jax.devices()[:1]), ("slots",))
    fn = jax.shard_map(
        lambda a: jax.lax.psum(a, "slots"), mesh=mesh, in_specs=P("slots"), out_specs=P()
    )
    prog = _compiled(fn, jnp.ones(4))
    with pytest.raises(engine.ImpureProgram, match="all-reduce"):
        engine.check_pure("psum", prog, "cpu")


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_every_program_of_both_experiments_is_pure(kind):
    """The programs a default sweep compiles (keys, prepare, cycle, report programs) pass the
    check, at the default float32 (engine._Compiler raises ImpureProgram otherwise)."""
    if kind == "classification":
        cells = [
            Cell(12, 36, 3.0, 5 / 12, 0.1, 0.1, 64, 0),
            Cell(12, 12, 1.0, 5 / 12, 0.1, 0.1, 64, 0),
        ]
        exp = classification.experiment(Protocol(), cells=cells)
    else:
        cells = regression.cells(n=(20,), width=64, seeds=1)
        exp = regression.experiment(regression.Protocol(), cells)
    exp = engine.plan(exp, cells)
    groups = {}
    for c in cells:
        groups.setdefault(exp.shape(c), []).append(c)
    prep = exp.prep_shapes(groups) if exp.prep_shapes else {b: b for b in groups}
    comp = engine._Compiler(exp, 2, 16, jnp.float32, jax.local_devices()[:1])
    for b in groups:
        comp.keys(len(exp.coords(cells[0])))
        comp.prepare(prep[b])
        comp.cycle(b, prep[b])
        assert isinstance(comp.extra(b), dict)


def test_a_long_wait_is_reported_with_what_it_waits_on(tmp_path):
    path = tmp_path / "stderr.txt"
    with open(path, "w") as stream:
        watch = engine._Watch(0.2, stream)
        with watch.waiting("a chunk of bucket X on cpu:0"):
            import time

            time.sleep(0.7)
        with watch.waiting("something quick"):
            pass
        watch.close()
    text = path.read_text()
    assert "still waiting after" in text and "a chunk of bucket X on cpu:0" in text
    assert "test_a_long_wait_is_reported_with_what_it_waits_on" in text  # the Python stacks
    assert "something quick" not in text
    with pytest.raises(ValueError, match="stall_warning_s"):
        engine.Engine(stall_warning_s=0)


# ----------------------------------------------------------------------------- the contract,
# driven by an experiment that uses every optional part of it (tests/contract_experiment.py:
# 1-D least squares by GD, with a closed form)

import contract_experiment as toy  # noqa: E402 - imported where its section starts

TOY_CELLS = [toy.Cell(n, lr, s) for n in (5, 12) for lr in (0.1, 0.6) for s in range(2)]


def _same(a, b) -> bool:
    """Rows equal bit for bit (repr: nan equals nan, 0.1 differs from 0.1 + 1 ulp)."""
    return [repr(sorted(r.items())) for r in a] == [repr(sorted(r.items())) for r in b]


def _toy_rows(cells, protocol=toy.Protocol(), **engine_kw):
    exp = toy.experiment(protocol, cells)
    rows, stats = engine.run(exp, cells, engine.Engine(slots=2, **engine_kw))
    return exp, sorted(rows, key=lambda r: (r["n"], r["lr"], r["seed"], r["step"])), stats


def test_toy_rows_follow_the_closed_form_with_several_rows_per_report():
    """Every record of every run is written once (two per report: the halt every 2 * record
    steps carries the middle one), the run resumes after each halt, the last row is final and
    w_t matches w* (1 - (1 - lr s)^t) computed on the host from the same data."""
    exp, rows, stats = _toy_rows(TOY_CELLS)
    assert stats.models == len(TOY_CELLS) and stats.rows == 4 * len(TOY_CELLS)
    for c in TOY_CELLS:
        mine = [r for r in rows if (r["n"], r["lr"], r["seed"]) == c]
        assert [r["step"] for r in mine] == [10, 20, 30, 40]
        assert [r["final"] for r in mine] == [False, False, False, True]
        np.testing.assert_allclose([r["w"] for r in mine], [r["w_exact"] for r in mine], rtol=2e-5)


def test_toy_program_and_crop_are_exact():
    """The extra program's loss equals the loss of the host's own draw of the cell's data; a
    cell sampled at the largest n and cropped gives the rows it gives sampled alone."""
    _, rows, _ = _toy_rows(TOY_CELLS)
    for r in (r for r in rows if r["final"]):
        key = jax.random.fold_in(jax.random.PRNGKey(0), r["seed"])
        x, y = (np.asarray(a, np.float64) for a in toy._draw(key, r["n"]))
        assert r["loss"] == pytest.approx(np.mean((r["w"] * x - y) ** 2) / 2, rel=1e-5)
    small = [c for c in TOY_CELLS if c.n == 5]
    _, alone, _ = _toy_rows(small)  # one bucket: sampled at n = 5, no crop
    assert _same(alone, [r for r in rows if r["n"] == 5])


def test_toy_chunks_and_resume_never_change_a_row():
    """A chunk shorter than the halt period (the host sees the runs mid-interval) gives the same
    rows; a results file missing a run's last rows resumes that run only, adding just them."""
    exp, rows, _ = _toy_rows(TOY_CELLS)
    _, short, _ = _toy_rows(TOY_CELLS, chunk=3)
    assert _same(short, rows)
    cut = [
        r for r in rows if not ((r["n"], r["lr"], r["seed"]) == TOY_CELLS[0] and r["step"] >= 30)
    ]
    res = engine.resume(exp, cut, TOY_CELLS)
    todo = [c for c in TOY_CELLS if c not in res.done]
    assert todo == [TOY_CELLS[0]]
    _, again, _ = _toy_rows(todo)
    added = res.new_rows(again)
    assert [r["step"] for r in added] == [30, 40]
    assert _same(sorted(cut + added, key=lambda r: (r["n"], r["lr"], r["seed"], r["step"])), rows)


def test_a_sweep_with_nothing_left_to_train_asks_the_experiment_nothing():
    """A rerun of a finished sweep has no cells: no program, no prep_shapes (whose max over no
    cells failed before: `reproduce kou-cnn` rerun on its finished directory was a traceback)."""
    rows, stats = engine.run(toy.experiment(), [], engine.Engine(slots=2))
    assert rows == [] and stats.models == 0 and stats.buckets == 0


def test_toy_halting_at_the_last_step_off_the_period():
    """A run whose step budget is not a multiple of the halt period ends at its budget."""
    cells = TOY_CELLS[:2]
    _, rows, stats = _toy_rows(cells, toy.Protocol(steps=25, record=10))
    assert stats.models == 2
    assert [r["step"] for r in rows if r["seed"] == 0] == [10, 20, 25]
    assert [r["final"] for r in rows if r["seed"] == 0] == [False, False, True]


# ----------------------------------------------------------------------------- the defaults the
# engine derives for the minimal experiment (tests/toy_plugin: docs/adding-a-theorem.md's example)

sys.path.insert(0, str(Path(__file__).parent / "toy_plugin"))
import jaxbof_toy as minimal  # noqa: E402 - importable once sys.path has it


def test_the_minimal_experiment_follows_its_closed_form_with_derived_defaults():
    """Four required values and nothing else: every run matches w* (1 - (1 - lr s)^t) on its own
    data, every cell draws its own data (the default keys fold in every field), and the
    default cell_of gives back each cell from its row, so a resume has nothing left to do."""
    cells = [minimal.Cell(lr, s) for lr in (0.1, 0.9) for s in range(3)]
    exp = minimal.PLUGIN.experiment(None, cells)
    rows, stats = engine.run(exp, cells, engine.Engine(slots=4))
    assert stats.models == len(cells) and len(rows) == len(cells)
    for r in rows:
        assert r["error"] < 1e-5 and not r["diverged"]
    assert len({round(r["lr_s"] / r["lr"], 6) for r in rows}) == 6  # s = mean(x^2): 6 draws
    res = engine.resume(exp, rows, cells)
    assert res.done == set(cells)
    assert res.new_rows(rows) == []


def test_default_keys_fold_in_every_field_of_the_cell():
    """The default coordinates: an int as itself, a float as the two words of its float64 bits,
    a bool as 0/1; the keys fold them in order (fold_in, the same as by hand)."""

    class C(NamedTuple):
        n: int
        lr: float
        on: bool

    coords = engine._default_coords(C(7, 0.5, True))
    bits = np.array([0.5], np.float64).view(np.uint32)
    np.testing.assert_array_equal(coords, [7, bits[0], bits[1], 1])
    base = jax.random.PRNGKey(0)
    by_hand = base
    for c in coords:
        by_hand = jax.random.fold_in(by_hand, int(c))
    got = engine._default_keys(base, jnp.asarray(coords))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(by_hand))
    assert not np.array_equal(
        engine._default_coords(C(7, 0.5, True)), engine._default_coords(C(7, 0.5000001, True))
    )


def test_a_halted_run_stays_put_without_a_guard_in_step():
    """The engine keeps a halted state as it is: a step that always adds 1 to w, halting at 3
    steps, reports w = 3 whatever the chunk (the slot idles in the loop while others run)."""

    class Cell(NamedTuple):
        stop: int
        seed: int

    class State(NamedTuple):
        w: jax.Array
        steps: jax.Array
        done: jax.Array

    class Run(NamedTuple):
        stop: jax.Array
        state: State

    def init(key, cell, shape):
        return Run(cell.stop, State(jnp.float32(0), jnp.int32(0), jnp.bool_(False)))

    def step(run, st):
        return State(st.w + 1, st.steps + 1, st.steps + 1 >= run.stop)

    def report(h):
        return [
            [{"stop": c.stop, "seed": c.seed, "w": float(r.state.w)}]
            for r, c in zip(h.runs(), h.cells)
        ]

    exp = engine.Experiment(
        init, step, report, engine.Schema({"stop": "int", "seed": "int", "w": "float"})
    )
    cells = [Cell(3, 0), Cell(40, 0)]
    rows, _ = engine.run(exp, cells, engine.Engine(slots=2, chunk=64))
    assert sorted((r["stop"], r["w"]) for r in rows) == [(3, 3.0), (40, 40.0)]


def test_a_slot_without_done_and_steps_is_refused_naming_them():
    class Cell(NamedTuple):
        seed: int

    class State(NamedTuple):
        w: jax.Array

    class Run(NamedTuple):
        state: State

    exp = engine.Experiment(
        lambda key, cell, shape: Run(State(jnp.float32(0))),
        lambda run, st: st,
        lambda h: [],
        engine.Schema({"seed": "int"}),
    )
    with pytest.raises(
        ValueError,
        match=r"without state.done \(bool scalar\) and "
        r"state.steps \(int32 scalar\)",
    ):
        engine.run(exp, [Cell(0)], engine.Engine(slots=1))


def test_cells_that_are_not_namedtuples_need_their_own_coordinates():
    exp = minimal.PLUGIN.experiment(None, ())
    with pytest.raises(TypeError, match="not NamedTuples: give coords, inputs, cell_of"):
        engine.plan(exp, [(0.1, 0)])
