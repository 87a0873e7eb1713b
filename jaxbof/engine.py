"""The sweep engine: the one place that jits, vmaps and schedules grids of training runs.

It knows no experiment. An experiment hands it an `Experiment`, a NamedTuple of pure functions
(in the spirit of optax's GradientTransformation), and a list of cells; the engine trains every
cell and passes the measured rows to a callback as soon as they exist.

Scheduling. Cells are grouped into buckets of equal compiled shape (`Batching.shape`). Each
bucket runs by continuous batching: B slots step in lock-step for a chunk of K steps inside one
compiled while-loop, which returns early once every slot has halted. A slot halts when its run
needs the host: it finished (converged, diverged, out of steps) or reached a recording time.
Between chunks the host measures the halted slots (`Experiment.report`, which returns rows and
says whether the run is finished), refills finished slots from the bucket's queue and resumes
the others (`Batching.resume`), so runs of very different lengths share a batch without
waiting for the slowest (docs/performance.md). Where runs halt only when finished (no `resume`),
the halted slots are refilled at once and measured while the next chunk trains. Several
buckets may sample their cells with one compiled sampler at a larger shape
(`Batching.prep_shapes`); `Batching.crop` cuts a prepared slot down exactly.

Devices. A bucket's batch is D x B slots over the process's D local devices (a one-axis mesh,
axis "slots", B slots per device): prepare and the cycle run under shard_map, the experiment's
programs with the slot axis sharded; a device's slots are refilled only from cells sampled on
that device, and each device leaves its while-loop on its own once its slots have halted.
Every program the engine runs is pure XLA, checked when it is compiled (`check_pure`): no
collective (a device never waits on another device's program, whatever their trip counts) and,
on CPU, no library kernel (custom call). XLA:CPU runs the devices' programs on one thread pool;
a library kernel such as jaxlib's batched LAPACK eigh splits its batch over that pool and blocks
a pool thread until the parts are done, so two devices running it at once on a 2-core machine
hold both threads and wait for each other forever. Such work belongs on the host (`report`).
A wait on a device that lasts past `Engine.stall_warning_s` is reported on stderr with the
bucket, program and devices it waits on, and the threads' Python stacks.
Processes never share arrays: a multi-process sweep gives each process its own cells (`owner`,
a stable hash of the coordinates), and the caller merges their rows (jaxbof.store).

Compilation. Programs are compiled ahead of time, cached for the process by everything their
compiled form depends on, and timed. While one bucket trains on this thread, the next buckets
compile on a second one (XLA compiles without the GIL).

Determinism. Every number depends only on the cell, its keys (fold_in of the cell's coordinates)
and B, the slots per device: not on the other cells, the order, the chunk, the slot a cell
lands in, the number of devices or processes. (B matters only in the last bits: XLA's CPU
kernels for a batch of B products may round differently for another B; tests pin it.)

The contract (jaxbof.contract, re-exported here): init, step, report and a Schema, with the
defaults for keys, cells of stored rows and example cells derived from NamedTuple cells
(`plan`). The slot init returns is a NamedTuple with a field `state` (the part carried by the
loop), where `state.done` is a bool (halted: the host must look at it) and `state.steps` an
int32 step counter, checked when init is traced; the engine keeps a halted state unchanged
(and halts idle slots by setting done).
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import hashlib
import os
import re
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from threadpoolctl import threadpool_limits

from jaxbof.contract import Batching, Cells, Experiment, Halted, Report, Schema

__all__ = [
    "Batching",
    "Cells",
    "Engine",
    "Experiment",
    "Halted",
    "ImpureProgram",
    "Plan",
    "Program",
    "Report",
    "Resume",
    "Schema",
    "SweepStats",
    "check_pure",
    "default_slots",
    "init_processes",
    "local_devices",
    "memory_slots",
    "owner",
    "plan",
    "resume",
    "run",
    "take",
]

AXIS = "slots"  # the one mesh axis: slots of a bucket spread over local devices


class Program(NamedTuple):
    """An experiment's extra device program (`Batching.programs`); a plain (fn, args) pair is
    a batched one."""

    fn: Callable
    args: tuple  # example arguments (ShapeDtypeStructs or arrays)
    batched: bool = True  # True: maps the B slots, per device; False: one slot, first device


class Plan(NamedTuple):
    """An `Experiment` with every default worked out for one sweep's cells (`plan`): what the
    engine's scheduler and compiler read. Built by the engine; experiments never write one.

    name: the compile-cache name (module and qualified names of init, step and the functions
    that shape their inputs);
    columns, key_columns, final, flags: the schema; static: the protocol; the rest are the
    functions of `Experiment`, `Batching` and `Cells` with their defaults filled in, in the
    engine's calling conventions: prepare(inputs, shape) -> slot, report(bucket, slots,
    halted, cells, programs) -> [Report], step(slot, state) -> state (halted states kept).
    """

    name: str
    columns: dict
    key_columns: tuple
    final: str | None
    flags: Mapping[str, Any] | None
    static: Hashable
    seed: int
    coords: Callable
    keys: Callable
    shape: Callable
    inputs: Callable
    prepare: Callable
    step: Callable
    example_cell: Callable
    report: Callable
    step_flops: Callable
    cell_of: Callable
    run_cost: Callable
    prep_shapes: Callable | None
    crop: Callable | None
    resume: Callable | None
    programs: Callable | None


def plan(exp: Experiment | Plan, cells: Sequence[Any]) -> Plan:
    """`exp` with the defaults of `Cells` and `Batching` derived from the sweep's `cells`
    (NamedTuples, for any default of `Cells`). A Plan is returned as it is."""
    if isinstance(exp, Plan):
        return exp
    if not isinstance(exp, Experiment):
        raise TypeError(f"expected a jaxbof.contract.Experiment, got {type(exp).__name__}")
    cells = list(cells)
    b, c, schema = exp.batching, exp.cells, exp.schema
    shape = b.shape or (lambda cell: None)
    needs_fields = [name for name in ("coords", "inputs", "cell_of") if getattr(c, name) is None]
    if needs_fields and schema.keys is None:
        needs_fields.append("schema.keys")
    if needs_fields and cells and not hasattr(cells[0], "_fields"):
        raise TypeError(
            f"cells of type {type(cells[0]).__name__} are not NamedTuples: give "
            f"{', '.join(needs_fields)} (jaxbof.contract.Cells)"
        )
    fields = tuple(cells[0]._fields) if cells and hasattr(cells[0], "_fields") else ()
    keys = tuple(schema.keys) if schema.keys is not None else fields
    columns = dict(schema.columns)
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ValueError(
            f"key columns {missing} are not columns of the schema ({', '.join(columns)})"
        )
    examples: dict = {}
    for cell in cells:
        examples.setdefault(shape(cell), cell)
    if b.prep_shapes is not None and examples:
        groups: dict = {}
        for cell in cells:
            groups.setdefault(shape(cell), []).append(cell)
        for bucket, sh in b.prep_shapes(groups).items():
            examples.setdefault(sh, examples[bucket])
    step_flops = b.step_flops or (lambda bucket, cell: 1.0)
    init, report = exp.init, exp.report
    return Plan(
        name="|".join(_qualified(f) for f in (init, exp.step, c.keys, c.inputs, b.crop, b.resume)),
        columns=columns,
        key_columns=keys,
        final=schema.final,
        flags=schema.flags,
        static=exp.protocol,
        seed=int(exp.seed),
        coords=c.coords or _default_coords,
        keys=c.keys or _default_keys,
        shape=shape,
        inputs=c.inputs or _default_inputs,
        prepare=lambda inputs, sh: init(*inputs, sh),
        step=_keeping_halted(exp.step),
        example_cell=c.example_cell or examples.__getitem__,
        report=lambda bucket, slots, idx, cs, progs: [
            r if isinstance(r, Report) else Report(list(r), True)
            for r in report(Halted(slots, idx, cs, bucket, progs))
        ],
        step_flops=step_flops,
        cell_of=c.cell_of or _default_cell_of(cells),
        run_cost=b.run_cost or step_flops,
        prep_shapes=b.prep_shapes,
        crop=b.crop,
        resume=b.resume,
        programs=b.programs,
    )


def _qualified(fn) -> str:
    """A function's module and qualified name: with the protocol, the compile-cache key of
    the programs built from it (None: a default)."""
    if fn is None:
        return "-"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _keeping_halted(step: Callable) -> Callable:
    """step, with a halted state kept as it is (an experiment need not guard its update)."""

    def kept(slot, state):
        new = step(slot, state)
        return jax.tree.map(lambda old, upd: jnp.where(state.done, old, upd), state, new)

    return kept


def _words(value) -> list[int]:
    """A cell field as uint32 words for fold_in (`Cells.coords`' default)."""
    if isinstance(value, (bool, np.bool_)):
        return [int(value)]
    if isinstance(value, (int, np.integer)):
        if not -(2**31) <= value < 2**32:
            raise ValueError(f"cell field {value!r} is outside [-2^31, 2^32): give Cells.coords")
        return [int(value) % 2**32]
    if isinstance(value, (float, np.floating)):
        return [int(w) for w in np.array([value], np.float64).view(np.uint32)]
    if isinstance(value, str):
        return [zlib.crc32(value.encode())]
    raise TypeError(
        f"cell field {value!r} ({type(value).__name__}) has no default coordinate: "
        "give Cells.coords"
    )


def _default_coords(cell) -> np.ndarray:
    return np.array([w for v in cell for w in _words(v)], np.uint32)


def _default_keys(base, coords):
    key = base
    for i in range(coords.shape[0]):
        key = jax.random.fold_in(key, coords[i])
    return key


def _default_inputs(cells, keys_B, dtype) -> tuple:
    """(keys, cell): the cell's fields batched as int32 / dtype / bool; a str field is not
    traced and reaches init as None."""
    first = cells[0]

    def column(i, v):
        if isinstance(v, (bool, np.bool_)):
            return np.array([c[i] for c in cells], bool)
        if isinstance(v, (int, np.integer)):
            return np.array([c[i] for c in cells], np.int32)
        if isinstance(v, (float, np.floating)):
            return np.array([c[i] for c in cells], dtype)
        return None

    return np.asarray(keys_B), type(first)(*(column(i, v) for i, v in enumerate(first)))


def _default_cell_of(cells) -> Callable:
    """row -> cell: the fields of the first cell, typed like its values."""
    if not cells or not hasattr(cells[0], "_fields"):
        return lambda row: None
    first = cells[0]
    kinds = [type(v) if isinstance(v, (bool, int, float, str)) else None for v in first]
    fields = first._fields

    def cell_of(row):
        return type(first)(*(row[f] if k is None else k(row[f]) for f, k in zip(fields, kinds)))

    return cell_of


@dataclasses.dataclass(frozen=True)
class Engine:
    """How a sweep is executed. Only `slots` (per device) can change a result, and only in the
    last bits (module docstring: Determinism)."""

    slots: int | None = None  # runs in lock-step per device; None: by platform (and memory)
    chunk: int = 64  # steps between host checks
    compile_ahead: bool = True  # compile the next buckets on a second thread while training
    devices: int | None = None  # local devices the slots are sharded over; None: all
    stall_warning_s: float = 300.0  # report a wait on a device longer than this (stderr)

    def __post_init__(self):
        for name in ("slots", "chunk", "devices"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name}={v!r} must be >= 1")
        if not self.stall_warning_s > 0:
            raise ValueError(f"stall_warning_s={self.stall_warning_s!r} must be > 0")


class SweepStats(NamedTuple):
    models: int  # runs finished
    rows: int  # rows reported (several per run where an experiment records a trajectory)
    wall_s: float
    compile_s: float  # summed over programs; overlaps training when compiled ahead
    flops_executed: float  # step FLOPs run, padding and idle slots included
    flops_useful: float  # step FLOPs of the cells' own shapes for the steps they needed
    buckets: int
    devices: int = 1  # local devices the slots were sharded over
    slots: int = 0  # slots per batch (all devices together)
    phases: Mapping[str, float] = MappingProxyType({})  # seconds by phase (`PHASES`)


# Where a sweep's time goes (SweepStats.phases, seconds). Main thread, summing to wall_s with
# "other": setup (tracing slot sizes), compile_wait (for programs compiled ahead), prepare
# (dispatching the sampling of batches), train (waiting on the cycle: the device's training,
# and its sampling unless JAXBOF_PHASES=sync blocks on each sampled batch, attributing it to
# prepare), report (Experiment.report: host measurements and their device programs), write
# (on_rows). Summed over both threads, overlapping training when compiled ahead: lower (tracing
# and lowering programs, eval_shape), compile (XLA compiles or persistent-cache loads).
PHASES = (
    "setup",
    "compile_wait",
    "prepare",
    "train",
    "report",
    "write",
    "other",
    "lower",
    "compile",
)


class Resume(NamedTuple):
    """What a results file already holds, for rerunning the same sweep."""

    done: set  # cells whose last row is stored: not trained again
    stored: set  # keys (the schema's key columns) of every stored row: never written twice
    key_columns: tuple = ()

    def new_rows(self, rows: Sequence[dict]) -> list[dict]:
        """The rows not stored yet (a rerun of a cut-short run reproduces its stored rows)."""
        return [r for r in rows if tuple(r[k] for k in self.key_columns) not in self.stored]


def resume(exp: Experiment | Plan, stored_rows: Sequence[dict], cells: Sequence[Any]) -> Resume:
    """Cells finished and row keys present in `stored_rows` (e.g. store.load_results(DIR)), for
    a sweep of `cells`."""
    p = plan(exp, cells)
    done = {p.cell_of(r) for r in stored_rows if p.final is None or r[p.final]}
    return Resume(done, {tuple(r[k] for k in p.key_columns) for r in stored_rows}, p.key_columns)


def default_slots() -> int:
    """Runs per compiled batch per device: a few on CPU (one batched step already fills the
    core), many on accelerators (one big batch); `memory_slots` caps it."""
    return 8 if jax.default_backend() == "cpu" else 512


def local_devices(count: int | None = None) -> list:
    """The first `count` devices of this process (all if None); ValueError naming the allowed
    range if there are fewer."""
    devs = jax.local_devices()
    if count is None:
        return devs
    if not 1 <= count <= len(devs):
        raise ValueError(
            f"devices={count}: this process has {len(devs)} "
            f"{devs[0].platform} device(s); allowed 1 to {len(devs)}"
        )
    return devs[:count]


SLOT_COPIES = 4  # a slot's bytes held at once per run: slots, fresh batch, step temporaries
MEMORY_FRACTION = 0.5  # of a device's memory (host memory per device on CPU) given to slots


def device_memory(device) -> int:
    """Bytes a device can hold: the allocator's limit on accelerators, physical host memory
    shared by the local devices on CPU."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return host // max(1, sum(d.platform == device.platform for d in jax.local_devices()))


def memory_slots(slot_bytes: int, device) -> int:
    """Most slots of `slot_bytes` each that fit one device (at least 1): a grid whose slots do
    not fit at once runs in more batches, never out of memory."""
    budget = MEMORY_FRACTION * device_memory(device)
    return max(1, int(budget // max(1, SLOT_COPIES * slot_bytes)))


def owner(exp: Experiment | Plan, cell, processes: int) -> int:
    """The process (0 .. processes-1) that trains `cell` in a multi-process sweep: a stable
    hash of the cell's coordinates, the same in every process, run and Python version."""
    coords = plan(exp, [cell]).coords(cell)
    digest = hashlib.blake2b(np.asarray(coords, np.uint32).tobytes(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") % processes


def init_processes(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[int, int]:
    """Join a multi-process sweep through JAX's distributed runtime; returns (process index,
    process count). With all three arguments given it connects to `coordinator` (HOST:PORT,
    served by process 0); with none, it initializes only where JAX detects a multi-process
    launch itself (srun with several tasks, mpirun) and otherwise stays one process."""
    given = [a is not None for a in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "coordinator, num_processes and process_id go together "
            f"(given: coordinator={coordinator!r}, num_processes={num_processes!r},"
            f" process_id={process_id!r})"
        )
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:  # pyright: ignore[reportOptionalOperand, reportOperatorIssue] - all given
            raise ValueError(
                f"process_id={process_id}, num_processes={num_processes}: need "
                "0 <= process_id < num_processes"
            )
        if num_processes > 1:  # pyright: ignore[reportOptionalOperand] - all given
            jax.distributed.initialize(coordinator, num_processes, process_id)
    elif _launched_by_cluster():
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def _launched_by_cluster() -> bool:
    """A launcher JAX knows started several processes of this command (Slurm's srun, Open MPI):
    not merely a job allocation, in which a lone process must not wait for peers."""
    env = os.environ
    tasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
    if "SLURM_STEP_ID" in env and int(tasks) > 1:
        return True
    return int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1


# ----------------------------------------------------------------------------- device programs

_COLLECTIVE = re.compile(
    r"= [^=\n]*? (all-reduce|all-gather|all-to-all|collective-permute|"
    r"reduce-scatter|collective-broadcast|ragged-all-to-all)(-start)?\("
)
_CUSTOM_CALL = re.compile(r'custom_call_target="([^"]+)"')


class ImpureProgram(ValueError):
    """An engine program with a collective or (on CPU) a library kernel (`check_pure`)."""


def check_pure(name, compiled, platform: str):
    """Refuse a compiled program that could wait on something other than its own device: a
    collective (it would wait on other devices' programs) or, on CPU, a custom call (a library
    kernel: jaxlib's batched LAPACK kernels block a thread of the pool that runs every device's
    program until their parts finish, which deadlocks once every pool thread does so).
    Returns `compiled`."""
    text = compiled.as_text()
    bad = sorted({m.group(1) for m in _COLLECTIVE.finditer(text)})
    if bad:
        raise ImpureProgram(
            f"engine program {name!r} contains collectives {bad}: the engine's "
            "programs run per device and must not communicate"
        )
    if platform == "cpu":
        calls = sorted(set(_CUSTOM_CALL.findall(text)))
        if calls:
            raise ImpureProgram(
                f"engine program {name!r} calls library kernels {calls} on CPU: the devices' "
                "programs share XLA:CPU's thread pool, which such a kernel can block; compute "
                "this on the host (Experiment.report) or with plain jnp operations"
            )
    return compiled


class _Watch:
    """What the sweep waits for, and since when: a daemon thread reports on stderr a wait longer
    than `limit` seconds (with every thread's Python stack), again every `limit` seconds. It
    only reports: a slow chunk is not an error, and nothing is cancelled."""

    def __init__(self, limit: float, stream=None):
        self.limit, self.stream = limit, stream
        self._what, self._since, self._told = None, 0.0, 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="jaxbof-watch", daemon=True).start()

    @contextlib.contextmanager
    def waiting(self, what: str):
        with self._lock:
            self._what, self._since, self._told = what, time.monotonic(), 0.0
        try:
            yield
        finally:
            with self._lock:
                self._what = None

    def _loop(self):
        while not self._stop.wait(min(self.limit / 4, 5.0)):
            with self._lock:
                what, waited = self._what, time.monotonic() - self._since
                due = what is not None and waited - self._told >= self.limit
                if due:
                    self._told = waited
            if due:
                out = self.stream or sys.stderr
                print(
                    f"jaxbof: still waiting after {waited:.0f} s for {what}; no result from the "
                    "device since. Python stacks of all threads follow.",
                    file=out,
                    flush=True,
                )
                with contextlib.suppress(Exception):
                    faulthandler.dump_traceback(out, all_threads=True)

    def close(self):
        self._stop.set()


def _cycle(exp: Plan, bucket, slots, fresh, load_b, src_b, keep_b, resume_b, num_steps):
    """One scheduling cycle of a bucket, batched over B slots:

    1. load rows src_b of a freshly prepared batch into the slots where load_b (cropped to the
       bucket's shape), 2. resume the halted runs where resume_b, 3. halt slots without a run
       (keep_b False), 4. run up to num_steps steps in lock-step, returning early once all slots
       have halted. Returns (slots, steps executed).
    """
    if exp.crop is not None:
        fresh = jax.vmap(lambda s: exp.crop(s, bucket))(fresh)  # pyright: ignore[reportOptionalCall] - checked on the line above

    def pick(mask):
        def f(old, new):
            return jnp.where(mask.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)

        return f

    slots = jax.lax.cond(
        jnp.any(load_b),
        lambda: jax.tree.map(lambda old, new: pick(load_b)(old, new[src_b]), slots, fresh),
        lambda: slots,
    )
    if exp.resume is not None:
        slots = jax.lax.cond(
            jnp.any(resume_b),
            lambda: jax.tree.map(pick(resume_b), slots, jax.vmap(exp.resume)(slots)),
            lambda: slots,
        )
    st = slots.state
    slots = slots._replace(state=st._replace(done=st.done | ~keep_b))

    def cond(carry):
        state, i = carry
        return (i < num_steps) & ~jnp.all(state.done)

    def body(carry):  # only the state is carried; the rest of the slot is loop-invariant
        state, i = carry
        return jax.vmap(exp.step)(slots, state), i + 1

    state, iters = jax.lax.while_loop(cond, body, (slots.state, jnp.zeros((), jnp.int32)))
    return slots._replace(state=state), iters


_PROGRAMS: dict = {}  # compiled programs of this process, shared by all sweeps
_PROGRAMS_LOCK = threading.Lock()


def _placed(compiled):
    """A compiled program that first puts its arguments where it was compiled to take them
    (host arrays, or device arrays of another sharding; a no-op for arrays already there)."""
    shardings = compiled.input_shardings[0]

    def put(a, sharding):  # host arrays are split by the call itself, at no extra cost
        if isinstance(a, jax.Array) and not a.sharding.is_equivalent_to(sharding, a.ndim):
            return jax.device_put(a, sharding)
        return a

    def call(*args):
        return compiled(*jax.tree.map(put, args, shardings))

    return call


class _Compiler:
    """Ahead-of-time compiled programs for B slots sharded over `devices`, cached (for the
    process) by everything their compiled form depends on, and timed; safe across threads."""

    def __init__(self, exp: Plan, B: int, chunk: int, dtype, devices: Sequence):
        self.exp, self.B, self.chunk, self.dtype = exp, B, chunk, dtype
        self.D = len(devices)
        if B % self.D:
            raise ValueError(f"{B} slots do not split over {self.D} devices")
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.sharded = NamedSharding(self.mesh, P(AXIS))  # leading (slot) axis over devices
        self.replicated = NamedSharding(self.mesh, P())
        with jax.default_device(devices[0]):
            self.base_key = jax.random.PRNGKey(exp.seed)
        self._lock = threading.Lock()
        self._static = (
            exp.name,
            exp.static,
            B,
            chunk,
            jnp.dtype(dtype).name,
            tuple(d.id for d in devices),
        )
        self.platform = devices[0].platform
        self.compile_s = 0.0  # making programs: tracing, lowering and compiling
        self.xla_s = 0.0  # of which XLA compiles (or persistent-cache loads) and their checks
        self._nested = threading.local()

    def _compile(self, name, lowered):
        t0 = time.perf_counter()
        out = check_pure(name, lowered.compile(), self.platform)
        with self._lock:
            self.xla_s += time.perf_counter() - t0
        return out

    def _get(self, name, make):
        with _PROGRAMS_LOCK:
            entry = _PROGRAMS.setdefault((name, self._static), [threading.Lock(), None])
        with entry[0]:
            if entry[1] is None:
                outer = not getattr(self._nested, "depth", 0)  # time each thing once
                self._nested.depth = getattr(self._nested, "depth", 0) + 1
                t0 = time.perf_counter()
                try:
                    entry[1] = make()
                finally:
                    self._nested.depth -= 1
                if outer:
                    with self._lock:
                        self.compile_s += time.perf_counter() - t0
        return entry[1]

    def _inputs_example(self, sh):
        return _inputs_example(self.exp, sh, self.B, self.dtype, self.base_key)

    def _prepare_fn(self, sh):
        return jax.vmap(lambda x: self.exp.prepare(x, sh))

    def _per_device(self, fn, in_specs, out_specs):
        """fn run on each device's slots (shard_map; fn itself on one device, which compiles
        faster). Experiments' loops need not declare device-varying values: check_vma off."""
        if self.D == 1:
            return fn
        return jax.shard_map(
            fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
        )

    def _shard(self, tree):
        """ShapeDtypeStructs of `tree` with the leading (slot) axis sharded over the mesh."""
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.sharded), tree
        )

    def keys(self, n_coords: int):
        coords = jax.ShapeDtypeStruct((self.B, n_coords), jnp.uint32)
        return self._get(
            ("keys", n_coords),
            lambda: _placed(
                self._compile(
                    "keys",
                    jax.jit(jax.vmap(self.exp.keys, in_axes=(None, 0))).lower(
                        jax.ShapeDtypeStruct(
                            self.base_key.shape, self.base_key.dtype, sharding=self.replicated
                        ),
                        jax.ShapeDtypeStruct(coords.shape, coords.dtype, sharding=self.sharded),
                    ),
                )
            ),
        )

    def _traced_prepare(self, sh):
        """prepare at shape sh, traced once for both its program and its slots' shapes."""
        fn = self._per_device(self._prepare_fn(sh), P(AXIS), P(AXIS))
        return self._get(
            ("traced prepare", sh),
            lambda: jax.jit(fn).trace(
                self._shard(jax.eval_shape(lambda x: x, self._inputs_example(sh)))
            ),
        )

    def prepare(self, sh):
        return self._get(
            ("prepare", sh),
            lambda: _placed(self._compile(f"prepare {sh}", self._traced_prepare(sh).lower())),
        )

    def slot_shapes(self, sh):
        return self._get(
            ("shapes", sh),
            lambda: self._shard(_checked_slot(self._traced_prepare(sh).out_info, sh, self.B)),
        )

    def cycle(self, bucket, prep_shape):
        def local(*args):  # one device's slots; each device leaves its loop on its own
            slots, iters = _cycle(self.exp, bucket, *args)
            return slots, iters[None]

        def make():
            b = jax.ShapeDtypeStruct((self.B,), bool, sharding=self.sharded)
            fn = self._per_device(local, (P(AXIS),) * 6 + (P(),), (P(AXIS), P(AXIS)))
            return self._compile(
                f"cycle {bucket}",
                jax.jit(fn).lower(
                    # takes only its own outputs, prepare's and host arrays
                    self.slot_shapes(bucket),
                    self.slot_shapes(prep_shape),
                    b,
                    jax.ShapeDtypeStruct((self.B,), jnp.int32, sharding=self.sharded),
                    b,
                    b,
                    jax.ShapeDtypeStruct((), jnp.int32, sharding=self.replicated),
                ),
            )

        return self._get(("cycle", bucket, prep_shape), make)

    def extra(self, bucket) -> dict:
        """The experiment's programs (`Program`): a batched one runs per device on its slots
        (shard_map, every argument and output split on its leading slot axis), an unbatched
        one on the first device alone. Neither communicates between devices."""
        if self.exp.programs is None:
            return {}
        first = jax.sharding.SingleDeviceSharding(self.mesh.devices.flat[0])

        def compile_(name, prog):
            if prog.batched:
                for a in jax.tree.leaves(prog.args):
                    if not (a.ndim and a.shape[0] == self.B):
                        raise ValueError(
                            f"batched program {name!r}: argument of shape "
                            f"{a.shape} has no leading slot axis of length {self.B}"
                        )
                fn = self._per_device(prog.fn, P(AXIS), P(AXIS))
                args = self._shard(prog.args)
            else:
                fn, args = (
                    prog.fn,
                    jax.tree.map(
                        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=first), prog.args
                    ),
                )
            return _placed(self._compile(name, jax.jit(fn).lower(*args)))

        out = {}
        for name, prog in self.exp.programs(bucket, self.slot_shapes(bucket), self.B).items():
            prog = Program(*prog)
            out[name] = self._get(("extra", name), lambda n=name, p=prog: compile_(n, p))
        return out


def take(tree, s: int):
    """Slot s of a batch of slots (a pytree of arrays with the leading slot axis), each leaf
    sliced on the device that holds it: no program spans devices."""

    def one(a):
        if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1:
            for shard in a.addressable_shards:
                rows = shard.index[0]
                start, stop = rows.start or 0, rows.stop if rows.stop is not None else a.shape[0]
                if start <= s < stop:
                    return shard.data[s - start]
            raise IndexError(f"slot {s} is not held by this process")
        return a[s]

    return jax.tree.map(one, tree)


def _checked_slot(shapes, sh, B: int):
    """The slot shapes init gives at shape `sh` (batched over B), if they hold what the engine
    reads: state.done (bool) and state.steps (int32), one per run; else a ValueError naming
    what is missing."""
    state = getattr(shapes, "state", None)
    want = {"done": jnp.dtype(bool), "steps": jnp.dtype(jnp.int32)}
    bad = [
        f"state.{k} ({v.name} scalar)"
        for k, v in want.items()
        if not (
            hasattr(state, k) and getattr(state, k).dtype == v and getattr(state, k).shape == (B,)
        )
    ]
    if bad:
        raise ValueError(
            f"init at shape {sh!r} returns a {type(shapes).__name__} without "
            f"{' and '.join(bad)}: the slot must be a NamedTuple whose field "
            "`state` carries them"
        )
    return shapes


def _inputs_example(exp: Plan, sh, B: int, dtype, base_key):
    cell = exp.example_cell(sh)
    n_coords = len(exp.coords(cell))
    keys = jax.eval_shape(
        jax.vmap(exp.keys, in_axes=(None, 0)),
        base_key,
        jax.ShapeDtypeStruct((B, n_coords), jnp.uint32),
    )
    return exp.inputs([cell] * B, np.zeros(keys.shape, keys.dtype), dtype)


def _nbytes(tree) -> int:
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- scheduling


def run(
    exp: Experiment | Plan,
    cells: Sequence[Any],
    engine: Engine = Engine(),
    *,
    on_rows: Callable[[list[dict]], None] | None = None,
    dtype=jnp.float32,
) -> tuple[list[dict], SweepStats]:
    """Train every cell once and measure it. Returns (rows, stats). Rows arrive in completion
    order; `on_rows` is called with each batch of new rows as soon as they are measured, so a
    caller can save them before the sweep ends."""
    exp = plan(exp, cells)
    t_start = time.perf_counter()
    phases = dict.fromkeys(PHASES, 0.0)
    sync = os.environ.get("JAXBOF_PHASES") == "sync"
    groups: dict[Hashable, list] = {}
    for c in cells:
        groups.setdefault(exp.shape(c), []).append(c)
    devices = local_devices(engine.devices)
    if not groups:  # (a rerun of a finished sweep: nothing to train, nothing to ask prep_shapes)
        return [], SweepStats(0, 0, time.perf_counter() - t_start, 0.0, 0.0, 0.0, 0, len(devices))
    prep_shape = exp.prep_shapes(groups) if exp.prep_shapes is not None else {b: b for b in groups}
    t = time.perf_counter()
    compiler = _compiler(exp, groups, prep_shape, engine, devices, dtype)
    phases["setup"] = time.perf_counter() - t

    rows: list[dict] = []
    counts = [0, 0.0, 0.0]  # finished runs, flops executed, flops useful

    def emit(new_rows, finished, fe, fu):
        rows.extend(new_rows)
        counts[0] += finished
        counts[1] += fe
        counts[2] += fu
        if on_rows is not None and new_rows:
            t = time.perf_counter()
            on_rows(new_rows)
            phases["write"] += time.perf_counter() - t

    run_cost = exp.run_cost or exp.step_flops

    def cost(b):  # biggest buckets first, so the last bucket to finish is a short one
        return sum(run_cost(b, c) for c in groups[b])

    order = sorted(groups, key=cost, reverse=True)
    n_coords = len(exp.coords(cells[0]))

    def compile_bucket(b):
        return (
            compiler.keys(n_coords),
            compiler.prepare(prep_shape[b]),
            compiler.cycle(b, prep_shape[b]),
            compiler.extra(b),
            compiler.slot_shapes(b),
        )

    # Host measurements are small: one BLAS thread, so that BLAS workers do not spin against
    # XLA's threads for the cores.
    pool = ThreadPoolExecutor(max_workers=1)
    watch = _Watch(engine.stall_warning_s)
    try:
        with threadpool_limits(1, user_api="blas"):
            compiled = [
                pool.submit(compile_bucket, b) if engine.compile_ahead else None for b in order
            ]
            for b, fut in zip(order, compiled):
                t = time.perf_counter()
                with watch.waiting(f"the compile of bucket {b}"):
                    progs = fut.result() if fut is not None else compile_bucket(b)
                phases["compile_wait"] += time.perf_counter() - t
                sweep = _Sweep(
                    exp,
                    compiler.B,
                    devices,
                    engine,
                    dtype,
                    compiler.base_key,
                    watch,
                    phases,
                    sync,
                    emit,
                )
                _Bucket(sweep, b, groups[b], progs).run()
    finally:  # an interrupted sweep does not wait for compiles it will not use
        watch.close()
        pool.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - t_start
    phases["other"] = wall - sum(phases[k] for k in PHASES[:6])
    phases["lower"], phases["compile"] = compiler.compile_s - compiler.xla_s, compiler.xla_s
    stats = SweepStats(
        counts[0],
        len(rows),
        wall,
        compiler.compile_s,
        counts[1],
        counts[2],
        len(groups),
        compiler.D,
        compiler.B,
        MappingProxyType(phases),
    )
    return rows, stats


def _compiler(
    exp: Plan, groups: dict, prep_shape: dict, engine: Engine, devices: Sequence, dtype
) -> _Compiler:
    """The compiler for this sweep's batches: per device, engine.slots (default_slots() if
    None), no more than the biggest bucket needs and at most what one device's memory holds of
    the largest slots; times the device count. The per-device count does not depend on the
    number of devices, so neither does any result. Slot sizes are traced (not run) for the
    two buckets of largest step cost, with the shapes the sweep compiles anyway."""
    D = len(devices)
    per_device = min(engine.slots or default_slots(), max(len(g) for g in groups.values()))
    compiler = _Compiler(exp, D * per_device, engine.chunk, dtype, devices)
    heavy = sorted(groups, key=lambda b: exp.step_flops(b, None), reverse=True)[:2]
    per_slot = (
        max(
            _nbytes(compiler.slot_shapes(b)) + _nbytes(compiler.slot_shapes(prep_shape[b]))
            for b in heavy
        )
        // compiler.B
    )
    fit = memory_slots(per_slot, devices[0])
    if fit < per_device:
        compiler = _Compiler(exp, D * fit, engine.chunk, dtype, devices)
    return compiler


class _Sweep(NamedTuple):
    """What the buckets of one sweep share: the experiment, B slots over `devices`, the engine's
    settings, the inputs' dtype and base key, the stall watch, the phase timers (sync: block on
    each sampled batch) and emit(rows, runs finished, FLOPs executed, FLOPs useful)."""

    exp: Plan
    B: int
    devices: Sequence
    engine: Engine
    dtype: Any
    base_key: Any
    watch: _Watch
    phases: dict
    sync: bool
    emit: Callable


class _Bucket:
    """Continuous batching of one bucket. Slot s lives on device s // Bl (Bl = B / D slots per
    device) and is refilled only from cells sampled on that device (row r of a fresh batch lives
    on r // Bl). Adds its time to the sweep's phases (prepare, train, report).

    State between chunks: `pending` (cells not sampled yet), `queues` (per device, the (row,
    cell) of the current sampled batch `fresh` not loaded yet), `upcoming` (the next sampled
    batch, dispatched while chunks train), `slot_cell` (the run in each slot, None: free),
    `resume` (halted runs to resume in the next chunk), `later` (deferred measurements)."""

    def __init__(self, sweep: _Sweep, bucket, group: list, programs):
        self.sweep, self.bucket = sweep, bucket
        self.keys_fn, self.prep, self.cycle_fn, self.extra, slot_shapes = programs
        self.D = len(sweep.devices)
        self.Bl = sweep.B // self.D  # slots per device
        self.where = (
            f"bucket {bucket} ({self.Bl} slots on each of "
            f"{', '.join(str(d) for d in sweep.devices)})"
        )
        self.pending = deque(group)
        self.queues, self.fresh = [deque() for _ in range(self.D)], None
        self.upcoming = self.launch()
        self.slot_cell: list = [None] * sweep.B
        self.resume = np.zeros(sweep.B, bool)
        self.slots = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), slot_shapes)
        self.per_step = sweep.exp.step_flops(bucket, None)
        # Without Experiment.resume every halted run is finished: its slot is refilled at once
        # and it is measured on the host while the next chunk trains (its slots stay alive
        # anyway until that chunk ends: no program donates its arguments).
        self.deferred = sweep.exp.resume is None
        self.later = None  # (slots, halted slots, their cells), measured during the next chunk

    def launch(self):
        """Dispatch (asynchronously) the sampling of the next B queued cells; returns (per-device
        queues of (row, cell), the sampled batch), or None once no cell is left."""
        if not self.pending:
            return None
        sw, D, Bl = self.sweep, self.D, self.Bl
        t = time.perf_counter()
        cells = [self.pending.popleft() for _ in range(min(sw.B, len(self.pending)))]
        rows: list = [None] * sw.B  # cell i is sampled on device i % D: short batches spread evenly
        for i, c in enumerate(cells):
            rows[(i % D) * Bl + i // D] = c
        padded = [c if c is not None else cells[0] for c in rows]
        keys = self.keys_fn(sw.base_key, np.stack([sw.exp.coords(c) for c in padded]))
        queues = [
            deque((r - k * Bl, rows[r]) for r in range(k * Bl, (k + 1) * Bl) if rows[r] is not None)
            for k in range(D)
        ]
        fresh = self.prep(sw.exp.inputs(padded, keys, sw.dtype))
        if sw.sync:
            jax.block_until_ready(fresh)
        sw.phases["prepare"] += time.perf_counter() - t
        return queues, fresh

    def load(self):
        """Fill the free slots from their devices' queues, first taking the next sampled batch
        if a device has free slots and no sampled cells left (cells sampled on other devices but
        not loaded yet go back to `pending`). Returns (slots to load, their rows in `fresh`)."""
        B, Bl = self.sweep.B, self.Bl
        load, src = np.zeros(B, bool), np.zeros(B, np.int32)
        free = [s for s in range(B) if self.slot_cell[s] is None]
        if self.upcoming is not None and any(not self.queues[s // Bl] for s in free):
            for q in reversed(self.queues):
                self.pending.extendleft(c for _, c in reversed(q))
            (self.queues, self.fresh), self.upcoming = self.upcoming, None
            self.upcoming = self.launch()  # sampled while the coming chunks train
        for s in free:
            if self.queues[s // Bl]:
                src[s], self.slot_cell[s] = self.queues[s // Bl].popleft()
                load[s] = True
        return load, src

    def measure(self, slots, idx, cells):
        """Report the halted slots idx of `slots`; frees the finished runs' slots (unless
        deferred: freed when they halted, maybe refilled since) and marks the others to resume.
        Returns (rows, runs finished, useful FLOPs)."""
        sw = self.sweep
        exp = sw.exp
        t = time.perf_counter()
        with sw.watch.waiting(
            f"the measurements (Experiment.report) of {len(idx)} runs of {self.where}"
        ):
            reports = exp.report(self.bucket, slots, idx, cells, self.extra)
        sw.phases["report"] += time.perf_counter() - t
        new_rows, finished, flops_use = [], 0, 0.0
        steps = np.asarray(slots.state.steps)
        for s, cell, rep in zip(idx, cells, reports):
            new_rows.extend(rep.rows)
            if rep.finished:
                flops_use += int(steps[s]) * exp.step_flops(self.bucket, cell)
                if not self.deferred:
                    self.slot_cell[s] = None
                finished += 1
            elif self.deferred:
                raise ValueError(
                    f"Experiment.report says a run of {self.where} is not finished, "
                    "but the experiment has no resume"
                )
            else:
                self.resume[s] = True
        return new_rows, finished, flops_use

    def measure_later(self):
        """Measure and emit the deferred runs, if any."""
        if self.later is not None:
            later, self.later = self.later, None
            new_rows, finished, flops_use = self.measure(*later)
            self.sweep.emit(new_rows, finished, 0.0, flops_use)

    def train(self, load, src, occupied):
        """Dispatch one chunk, measure the deferred runs while it trains, then wait for it.
        Returns (halted slots, FLOPs executed)."""
        sw = self.sweep
        chunk = f"a chunk of {sw.engine.chunk} steps of {self.where}, its sampling included"
        t = time.perf_counter()
        with sw.watch.waiting(chunk):  # dispatched: the device trains while the host measures
            self.slots, iters = self.cycle_fn(
                self.slots, self.fresh, load, src, occupied, self.resume, np.int32(sw.engine.chunk)
            )
        sw.phases["train"] += time.perf_counter() - t
        self.measure_later()
        t = time.perf_counter()
        with sw.watch.waiting(chunk):
            iters = np.asarray(iters)
        flops_exec = int(iters.sum()) * self.Bl * self.per_step
        halted = np.asarray(self.slots.state.done) & occupied
        sw.phases["train"] += time.perf_counter() - t
        self.resume = np.zeros(sw.B, bool)
        return halted, flops_exec

    def settle(self, halted, flops_exec):
        """Measure the halted runs now or (deferred) free their slots and keep them for
        `measure_later`; emits the chunk's rows and FLOPs."""
        idx = [int(s) for s in np.flatnonzero(halted)]
        cells = [self.slot_cell[s] for s in idx]
        if not idx or self.deferred:
            if idx:
                self.later = (self.slots, idx, cells)
                for s in idx:
                    self.slot_cell[s] = None
            self.sweep.emit([], 0, flops_exec, 0.0)
            return
        new_rows, finished, flops_use = self.measure(self.slots, idx, cells)
        self.sweep.emit(new_rows, finished, flops_exec, flops_use)

    def run(self):
        """Train chunks until every cell of the bucket is measured."""
        while True:
            load, src = self.load()
            occupied = np.array([c is not None for c in self.slot_cell])
            if not occupied.any():
                self.measure_later()
                return
            self.settle(*self.train(load, src, occupied))
