"""The engine's guarantees against stalls: every program it runs is pure XLA (no collective, no
library kernel on CPU), checked at compile time, and a long wait on a device is reported with
what it waits on. The sweeps on several devices themselves run in tests/test_scale.py."""

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
    fn = jax.shard_map(lambda a: jax.lax.psum(a, "slots"), mesh=mesh, in_specs=P("slots"),
                       out_specs=P())
    prog = _compiled(fn, jnp.ones(4))
    with pytest.raises(engine.ImpureProgram, match="all-reduce"):
        engine.check_pure("psum", prog, "cpu")


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_every_program_of_both_experiments_is_pure(kind):
    """The programs a default sweep compiles (keys, prepare, cycle, report programs) pass the
    check, at the default float32 (engine._Compiler raises ImpureProgram otherwise)."""
    if kind == "classification":
        cells = [Cell(12, 36, 3.0, 5 / 12, 0.1, 0.1, 64, 0), Cell(12, 12, 1.0, 5 / 12, 0.1, 0.1,
                                                                  64, 0)]
        exp = classification.experiment(Protocol(), cells=cells)
    else:
        cells = regression.cells(n=(20,), width=64, seeds=1)
        exp = regression.experiment(regression.Protocol(), cells)
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
# driven by a toy experiment (tests/toy_plugin: 1-D least squares by GD, with a closed form)

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "toy_plugin"))
from jaxbof_toy import program as toy  # noqa: E402

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
        np.testing.assert_allclose([r["w"] for r in mine], [r["w_exact"] for r in mine],
                                   rtol=2e-5)


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
    cut = [r for r in rows if not ((r["n"], r["lr"], r["seed"]) == TOY_CELLS[0]
                                   and r["step"] >= 30)]
    res = engine.resume(exp, cut)
    todo = [c for c in TOY_CELLS if c not in res.done]
    assert todo == [TOY_CELLS[0]]
    _, again, _ = _toy_rows(todo)
    added = res.new_rows(exp, again)
    assert [r["step"] for r in added] == [30, 40]
    assert _same(sorted(cut + added, key=lambda r: (r["n"], r["lr"], r["seed"], r["step"])),
                 rows)


def test_toy_halting_at_the_last_step_off_the_period():
    """A run whose step budget is not a multiple of the halt period ends at its budget."""
    cells = TOY_CELLS[:2]
    _, rows, stats = _toy_rows(cells, toy.Protocol(steps=25, record=10))
    assert stats.models == 2
    assert [r["step"] for r in rows if r["seed"] == 0] == [10, 20, 25]
    assert [r["final"] for r in rows if r["seed"] == 0] == [False, False, True]
