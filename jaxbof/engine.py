"""The sweep engine: the one place that jits, vmaps and schedules grids of training runs.

It knows no experiment. An experiment hands it an `Experiment`, a NamedTuple of pure functions
(in the spirit of optax's GradientTransformation), and a list of cells; the engine trains every
cell and passes the measured rows to a callback as soon as they exist.

Scheduling. Cells are grouped into buckets of equal compiled shape (`Experiment.shape`). Each
bucket runs by continuous batching: B slots step in lock-step for a chunk of K steps inside one
compiled while-loop, which returns early once every slot has halted. A slot halts when its run
needs the host: it finished (converged, diverged, out of steps) or reached a recording time.
Between chunks the host measures the halted slots (`Experiment.report`, which returns rows and
says whether the run is finished), refills finished slots from the bucket's queue and resumes
the others (`Experiment.resume`), so runs of very different lengths share a batch without
waiting for the slowest (performance.md). Where runs halt only when finished (no `resume`),
the halted slots are refilled at once and measured while the next chunk trains. Several
buckets may sample their cells with one compiled sampler at a larger shape
(`Experiment.prep_shapes`); `Experiment.crop` cuts a prepared slot down exactly.

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

Contract for the slot pytree an experiment's `prepare` returns: a NamedTuple with a field
`state` (the part carried by the loop), where `state.done` is a bool (halted: the host must look
at it) and `state.steps` an int32 step counter; `step(slot, state) -> state` must leave a halted
state unchanged (the engine also halts idle slots by setting done).
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

__all__ = ["Engine", "Experiment", "ImpureProgram", "Program", "Report", "Resume", "SweepStats",
           "check_pure", "default_slots", "init_processes", "local_devices", "memory_slots",
           "owner", "resume", "run", "take"]

AXIS = "slots"  # the one mesh axis: slots of a bucket spread over local devices


class Report(NamedTuple):
    """What `Experiment.report` returns for one halted slot."""

    rows: list[dict]  # measured rows (may be empty, or many: one per recorded time)
    finished: bool  # True: the run is over and its slot is free; False: resume it


class Program(NamedTuple):
    """An experiment's extra device program (`Experiment.programs`); a plain (fn, args) pair is
    a batched one."""

    fn: Callable
    args: tuple  # example arguments (ShapeDtypeStructs or arrays)
    batched: bool = True  # True: maps the B slots, per device; False: one slot, first device


class Experiment(NamedTuple):
    """An experiment as the engine sees it: pure functions and static descriptions.

    kind: name written to config.json ("classification", "regression", ...).
    columns: the result schema, {column: "int" | "float" | "bool" | "str"} in CSV order.
    key_columns: the columns of a row that identify its cell (for resuming).
    static: hashable; everything the compiled programs depend on besides shapes (cache key).
    seed: base PRNG seed of the whole sweep.
    coords(cell) -> uint32[C]: the coordinates folded into the cell's keys (host).
    keys(base_key, coords_C) -> keys: the cell's PRNG keys (device, one cell).
    shape(cell) -> Hashable: the compiled shape (bucket) a cell trains in.
    prep_shapes({bucket: cells}) -> {bucket: prep_shape}: the shape each bucket's cells are
        sampled at (None: the bucket's own shape).
    inputs(cells, keys_B, dtype) -> pytree of host arrays with a leading cell axis: the traced
        per-cell inputs of `prepare`.
    prepare(inputs, prep_shape) -> slot: sample one cell's data and model (device, one cell).
    crop(slot, bucket) -> slot: cut a slot prepared at a larger prep_shape down to the bucket's
        shape, exactly (device, one cell); None when prep shapes are always the bucket's.
    step(slot, state) -> state: one update of one run (device); a halted state stays put.
    resume(slot) -> slot: continue a halted, unfinished run (device, one cell); None if
        runs only halt when finished.
    example_cell(bucket) -> cell: any cell of that shape (used to lower programs).
    report(bucket, slots, halted, cells, programs) -> list[Report]: measure the halted slots
        (indices `halted` into the batch `slots`, device arrays; their cells) on the host.
    programs(bucket, slot_shapes, B) -> {name: Program}: extra device programs `report`
        uses, compiled ahead with the others and passed to it by name. The name is the cache
        key: it must say every shape the program depends on, so that buckets that need the
        same program share one compile (e.g. "weights_64_float32"). A batched program maps
        the slots (every argument and output has the leading slot axis, length B) and runs
        per device like the cycle; an unbatched one measures one slot (`take`) on the first
        device.
    step_flops(bucket, cell) -> float: FLOPs of one step of `cell` (cell None: of a padded
        slot of the bucket's shape).
    cell_of(row) -> cell: the cell a stored row belongs to (for resuming).
    run_cost(bucket, cell) -> float: a run's relative cost, to train the biggest buckets first
        (None: step_flops).
    final: the bool column that marks a run's last row (None: every row is a run's last), so
        that a run cut short by a crash is trained again and only its missing rows are added.
    flags: {column: value}: a row holding any of these values is a flagged run, left out of
        every mean and counted (`stats.is_flagged`; recorded in config.json with the key
        columns, so that readers of the directory need no copy of them). None: those of
        `stats.FLAGS` (diverged, not converged) that are columns.
    """

    kind: str
    columns: dict
    key_columns: tuple
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
    final: str | None = None
    run_cost: Callable | None = None
    prep_shapes: Callable | None = None
    crop: Callable | None = None
    resume: Callable | None = None
    programs: Callable | None = None
    flags: Mapping[str, Any] | None = None


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
PHASES = ("setup", "compile_wait", "prepare", "train", "report", "write", "other", "lower",
          "compile")


class Resume(NamedTuple):
    """What a results file already holds, for rerunning the same sweep."""

    done: set  # cells whose last row is stored: not trained again
    stored: set  # keys (Experiment.key_columns) of every stored row: never written twice

    def new_rows(self, exp: Experiment, rows: Sequence[dict]) -> list[dict]:
        """The rows not stored yet (a rerun of a cut-short run reproduces its stored rows)."""
        return [r for r in rows if tuple(r[k] for k in exp.key_columns) not in self.stored]


def resume(exp: Experiment, stored_rows: Sequence[dict]) -> Resume:
    """Cells finished and row keys present in `stored_rows` (e.g. store.load_results(DIR))."""
    done = {exp.cell_of(r) for r in stored_rows if exp.final is None or r[exp.final]}
    return Resume(done, {tuple(r[k] for k in exp.key_columns) for r in stored_rows})


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
        raise ValueError(f"devices={count}: this process has {len(devs)} "
                         f"{devs[0].platform} device(s); allowed 1 to {len(devs)}")
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


def owner(exp: Experiment, cell, processes: int) -> int:
    """The process (0 .. processes-1) that trains `cell` in a multi-process sweep: a stable
    hash of the cell's coordinates, the same in every process, run and Python version."""
    digest = hashlib.blake2b(np.asarray(exp.coords(cell), np.uint32).tobytes(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") % processes


def init_processes(coordinator: str | None = None, num_processes: int | None = None,
                   process_id: int | None = None) -> tuple[int, int]:
    """Join a multi-process sweep through JAX's distributed runtime; returns (process index,
    process count). With all three arguments given it connects to `coordinator` (HOST:PORT,
    served by process 0); with none, it initializes only where JAX detects a multi-process
    launch itself (srun with several tasks, mpirun) and otherwise stays one process."""
    given = [a is not None for a in (coordinator, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError("coordinator, num_processes and process_id go together "
                         f"(given: coordinator={coordinator!r}, num_processes={num_processes!r},"
                         f" process_id={process_id!r})")
    if all(given):
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ValueError(f"process_id={process_id}, num_processes={num_processes}: need "
                             "0 <= process_id < num_processes")
        if num_processes > 1:
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

_COLLECTIVE = re.compile(r"= [^=\n]*? (all-reduce|all-gather|all-to-all|collective-permute|"
                         r"reduce-scatter|collective-broadcast|ragged-all-to-all)(-start)?\(")
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
        raise ImpureProgram(f"engine program {name!r} contains collectives {bad}: the engine's "
                            "programs run per device and must not communicate")
    if platform == "cpu":
        calls = sorted(set(_CUSTOM_CALL.findall(text)))
        if calls:
            raise ImpureProgram(
                f"engine program {name!r} calls library kernels {calls} on CPU: the devices' "
                "programs share XLA:CPU's thread pool, which such a kernel can block; compute "
                "this on the host (Experiment.report) or with plain jnp operations")
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
                print(f"jaxbof: still waiting after {waited:.0f} s for {what}; no result from the "
                      "device since. Python stacks of all threads follow.", file=out, flush=True)
                with contextlib.suppress(Exception):
                    faulthandler.dump_traceback(out, all_threads=True)

    def close(self):
        self._stop.set()


def _cycle(exp: Experiment, bucket, slots, fresh, load_b, src_b, keep_b, resume_b, num_steps):
    """One scheduling cycle of a bucket, batched over B slots:

    1. load rows src_b of a freshly prepared batch into the slots where load_b (cropped to the
       bucket's shape), 2. resume the halted runs where resume_b, 3. halt slots without a run
       (keep_b False), 4. run up to num_steps steps in lock-step, returning early once all slots
       have halted. Returns (slots, steps executed).
    """
    if exp.crop is not None:
        fresh = jax.vmap(lambda s: exp.crop(s, bucket))(fresh)

    def pick(mask):
        def f(old, new):
            return jnp.where(mask.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
        return f

    slots = jax.lax.cond(
        jnp.any(load_b),
        lambda: jax.tree.map(lambda old, new: pick(load_b)(old, new[src_b]), slots, fresh),
        lambda: slots)
    if exp.resume is not None:
        slots = jax.lax.cond(jnp.any(resume_b),
                             lambda: jax.tree.map(pick(resume_b), slots, jax.vmap(exp.resume)(slots)),
                             lambda: slots)
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

    def __init__(self, exp: Experiment, B: int, chunk: int, dtype, devices: Sequence):
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
        self._static = (exp.kind, exp.static, B, chunk, jnp.dtype(dtype).name,
                        tuple(d.id for d in devices))
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
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                             check_vma=False)

    def _shard(self, tree):
        """ShapeDtypeStructs of `tree` with the leading (slot) axis sharded over the mesh."""
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                                           sharding=self.sharded), tree)

    def keys(self, n_coords: int):
        coords = jax.ShapeDtypeStruct((self.B, n_coords), jnp.uint32)
        return self._get(("keys", n_coords), lambda: _placed(self._compile("keys", jax.jit(
            jax.vmap(self.exp.keys, in_axes=(None, 0))).lower(
                jax.ShapeDtypeStruct(self.base_key.shape, self.base_key.dtype,
                                     sharding=self.replicated),
                jax.ShapeDtypeStruct(coords.shape, coords.dtype, sharding=self.sharded)))))

    def _traced_prepare(self, sh):
        """prepare at shape sh, traced once for both its program and its slots' shapes."""
        fn = self._per_device(self._prepare_fn(sh), P(AXIS), P(AXIS))
        return self._get(("traced prepare", sh), lambda: jax.jit(fn).trace(
            self._shard(jax.eval_shape(lambda x: x, self._inputs_example(sh)))))

    def prepare(self, sh):
        return self._get(("prepare", sh), lambda: _placed(self._compile(
            f"prepare {sh}", self._traced_prepare(sh).lower())))

    def slot_shapes(self, sh):
        return self._get(("shapes", sh), lambda: self._shard(self._traced_prepare(sh).out_info))

    def cycle(self, bucket, prep_shape):
        def local(*args):  # one device's slots; each device leaves its loop on its own
            slots, iters = _cycle(self.exp, bucket, *args)
            return slots, iters[None]

        def make():
            b = jax.ShapeDtypeStruct((self.B,), bool, sharding=self.sharded)
            fn = self._per_device(local, (P(AXIS),) * 6 + (P(),), (P(AXIS), P(AXIS)))
            return self._compile(f"cycle {bucket}", jax.jit(fn).lower(
                # takes only its own outputs, prepare's and host arrays
                self.slot_shapes(bucket), self.slot_shapes(prep_shape), b,
                jax.ShapeDtypeStruct((self.B,), jnp.int32, sharding=self.sharded), b, b,
                jax.ShapeDtypeStruct((), jnp.int32, sharding=self.replicated)))
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
                        raise ValueError(f"batched program {name!r}: argument of shape "
                                         f"{a.shape} has no leading slot axis of length {self.B}")
                fn = self._per_device(prog.fn, P(AXIS), P(AXIS))
                args = self._shard(prog.args)
            else:
                fn, args = prog.fn, jax.tree.map(
                    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=first), prog.args)
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


def _inputs_example(exp: Experiment, sh, B: int, dtype, base_key):
    cell = exp.example_cell(sh)
    n_coords = len(exp.coords(cell))
    keys = jax.eval_shape(jax.vmap(exp.keys, in_axes=(None, 0)), base_key,
                          jax.ShapeDtypeStruct((B, n_coords), jnp.uint32))
    return exp.inputs([cell] * B, np.zeros(keys.shape, keys.dtype), dtype)


def _nbytes(tree) -> int:
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- scheduling


def run(exp: Experiment, cells: Sequence[Any], engine: Engine = Engine(), *,
        on_rows: Callable[[list[dict]], None] | None = None,
        dtype=jnp.float32) -> tuple[list[dict], SweepStats]:
    """Train every cell once and measure it. Returns (rows, stats). Rows arrive in completion
    order; `on_rows` is called with each batch of new rows as soon as they are measured, so a
    caller can save them before the sweep ends."""
    t_start = time.perf_counter()
    phases = dict.fromkeys(PHASES, 0.0)
    sync = os.environ.get("JAXBOF_PHASES") == "sync"
    groups: dict[Hashable, list] = {}
    for c in cells:
        groups.setdefault(exp.shape(c), []).append(c)
    prep_shape = exp.prep_shapes(groups) if exp.prep_shapes is not None else {b: b for b in groups}
    devices = local_devices(engine.devices)
    if not groups:
        return [], SweepStats(0, 0, time.perf_counter() - t_start, 0.0, 0.0, 0.0, 0, len(devices))
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
        return (compiler.keys(n_coords), compiler.prepare(prep_shape[b]),
                compiler.cycle(b, prep_shape[b]), compiler.extra(b), compiler.slot_shapes(b))

    # Host measurements are small: one BLAS thread, so that BLAS workers do not spin against
    # XLA's threads for the cores.
    pool = ThreadPoolExecutor(max_workers=1)
    watch = _Watch(engine.stall_warning_s)
    try:
        with threadpool_limits(1, user_api="blas"):
            compiled = [pool.submit(compile_bucket, b) if engine.compile_ahead else None
                        for b in order]
            for b, fut in zip(order, compiled):
                t = time.perf_counter()
                with watch.waiting(f"the compile of bucket {b}"):
                    progs = fut.result() if fut is not None else compile_bucket(b)
                phases["compile_wait"] += time.perf_counter() - t
                _run_bucket(exp, b, groups[b], compiler.B, devices, engine, progs, dtype,
                            emit, compiler.base_key, watch, phases, sync)
    finally:  # an interrupted sweep does not wait for compiles it will not use
        watch.close()
        pool.shutdown(wait=False, cancel_futures=True)
    wall = time.perf_counter() - t_start
    phases["other"] = wall - sum(phases[k] for k in PHASES[:6])
    phases["lower"], phases["compile"] = compiler.compile_s - compiler.xla_s, compiler.xla_s
    stats = SweepStats(counts[0], len(rows), wall, compiler.compile_s, counts[1], counts[2],
                       len(groups), compiler.D, compiler.B, MappingProxyType(phases))
    return rows, stats


def _compiler(exp: Experiment, groups: dict, prep_shape: dict, engine: Engine, devices: Sequence,
              dtype) -> _Compiler:
    """The compiler for this sweep's batches: per device, engine.slots (default_slots() if
    None), no more than the biggest bucket needs and at most what one device's memory holds of
    the largest slots; times the device count. The per-device count does not depend on the
    number of devices, so neither does any result. Slot sizes are traced (not run) for the
    two buckets of largest step cost, with the shapes the sweep compiles anyway."""
    D = len(devices)
    per_device = min(engine.slots or default_slots(), max(len(g) for g in groups.values()))
    compiler = _Compiler(exp, D * per_device, engine.chunk, dtype, devices)
    heavy = sorted(groups, key=lambda b: exp.step_flops(b, None), reverse=True)[:2]
    per_slot = max(_nbytes(compiler.slot_shapes(b)) + _nbytes(compiler.slot_shapes(prep_shape[b]))
                   for b in heavy) // compiler.B
    fit = memory_slots(per_slot, devices[0])
    if fit < per_device:
        compiler = _Compiler(exp, D * fit, engine.chunk, dtype, devices)
    return compiler


def _run_bucket(exp: Experiment, bucket, group: list, B: int, devices: Sequence, engine: Engine,
                programs, dtype, emit, base_key, watch: _Watch, phases: dict, sync: bool = False):
    """Continuous batching of one bucket. Slot s lives on device s // (B / D) and is refilled
    only from cells sampled on that device (row r of a fresh batch lives on r // (B / D)).
    Adds its time to `phases` (prepare, train, report; sync: block on each sampled batch)."""
    keys_fn, prep, cycle_fn, extra, slot_shapes = programs
    D = len(devices)
    Bl = B // D  # slots per device
    where = f"bucket {bucket} ({Bl} slots on each of {', '.join(str(d) for d in devices)})"
    pending = deque(group)

    def launch():  # dispatch (asynchronously) the sampling of the next B queued cells
        if not pending:
            return None
        t = time.perf_counter()
        cells = [pending.popleft() for _ in range(min(B, len(pending)))]
        rows: list = [None] * B  # cell i is sampled on device i % D: short batches spread evenly
        for i, c in enumerate(cells):
            rows[(i % D) * Bl + i // D] = c
        padded = [c if c is not None else cells[0] for c in rows]
        keys = keys_fn(base_key, np.stack([exp.coords(c) for c in padded]))
        queues = [deque((r - k * Bl, rows[r]) for r in range(k * Bl, (k + 1) * Bl)
                        if rows[r] is not None) for k in range(D)]
        fresh = prep(exp.inputs(padded, keys, dtype))
        if sync:
            jax.block_until_ready(fresh)
        phases["prepare"] += time.perf_counter() - t
        return queues, fresh

    queues, fresh = [deque() for _ in range(D)], None
    upcoming = launch()
    slot_cell: list = [None] * B
    resume = np.zeros(B, bool)
    slots = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), slot_shapes)
    per_step = exp.step_flops(bucket, None)
    # Without Experiment.resume every halted run is finished: its slot is refilled at once and
    # it is measured on the host while the next chunk trains (its slots stay alive anyway until
    # that chunk ends: no program donates its arguments).
    deferred = exp.resume is None
    later = None  # (slots, halted slots, their cells): measured while the next chunk trains

    def measure(slots, idx, cells):
        """Report the halted slots idx of `slots`; returns (rows, runs finished, useful FLOPs)."""
        t = time.perf_counter()
        with watch.waiting(f"the measurements (Experiment.report) of {len(idx)} runs of {where}"):
            reports = exp.report(bucket, slots, idx, cells, extra)
        phases["report"] += time.perf_counter() - t
        new_rows, finished, flops_use = [], 0, 0.0
        steps = np.asarray(slots.state.steps)
        for s, cell, rep in zip(idx, cells, reports):
            new_rows.extend(rep.rows)
            if rep.finished:
                flops_use += int(steps[s]) * exp.step_flops(bucket, cell)
                if not deferred:  # (deferred: freed when it halted, maybe refilled since)
                    slot_cell[s] = None
                finished += 1
            elif deferred:
                raise ValueError(f"Experiment.report says a run of {where} is not finished, "
                                 "but the experiment has no resume")
            else:
                resume[s] = True
        return new_rows, finished, flops_use

    while True:
        load = np.zeros(B, bool)
        src = np.zeros(B, np.int32)
        free = [s for s in range(B) if slot_cell[s] is None]
        if upcoming is not None and any(not queues[s // Bl] for s in free):
            # a device has free slots and no sampled cells left: take the next batch; cells
            # sampled on other devices but not loaded yet go back to the queue
            for q in reversed(queues):
                pending.extendleft(c for _, c in reversed(q))
            (queues, fresh), upcoming = upcoming, None
            upcoming = launch()  # sampled while the coming chunks train
        for s in free:
            if queues[s // Bl]:
                src[s], slot_cell[s] = queues[s // Bl].popleft()
                load[s] = True
        occupied = np.array([c is not None for c in slot_cell])
        if not occupied.any():
            if later is not None:
                new_rows, finished, flops_use = measure(*later)
                emit(new_rows, finished, 0.0, flops_use)
            return
        chunk = f"a chunk of {engine.chunk} steps of {where}, its sampling included"
        t = time.perf_counter()
        with watch.waiting(chunk):  # dispatched: the device trains while the host measures
            slots, iters = cycle_fn(slots, fresh, load, src, occupied, resume,
                                    np.int32(engine.chunk))
        phases["train"] += time.perf_counter() - t
        if later is not None:
            new_rows, finished, flops_use = measure(*later)
            later = None
            emit(new_rows, finished, 0.0, flops_use)
        t = time.perf_counter()
        with watch.waiting(chunk):
            iters = np.asarray(iters)
        flops_exec = int(iters.sum()) * Bl * per_step
        halted = np.asarray(slots.state.done) & occupied
        phases["train"] += time.perf_counter() - t
        resume = np.zeros(B, bool)
        if not halted.any():
            emit([], 0, flops_exec, 0.0)
            continue
        idx = [int(s) for s in np.flatnonzero(halted)]
        cells = [slot_cell[s] for s in idx]
        if deferred:
            later = (slots, idx, cells)
            for s in idx:
                slot_cell[s] = None
            emit([], 0, flops_exec, 0.0)
            continue
        new_rows, finished, flops_use = measure(slots, idx, cells)
        emit(new_rows, finished, flops_exec, flops_use)
