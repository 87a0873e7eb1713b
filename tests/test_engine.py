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
