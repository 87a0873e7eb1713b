"""The sweep engine: the one place that jits, vmaps and schedules grids of training runs.

Cells are grouped into buckets of equal compiled shape: (GRAM, n, width), whose step cost does
not depend on d, or (DIRECT, n, width, d). Each bucket runs by continuous batching: B slots train
in lock-step for a chunk of K steps; between chunks, finished slots are measured, reported and
refilled from the bucket's queue, so models with very different step counts share a batch
without waiting for the slowest (performance.md). Programs that do not depend on n (key
derivation, the M-dimensional measurements) are compiled once and shared by all buckets.

Buckets are processed by a small pool of worker threads (one per CPU core on CPU, where a
batched step of these sizes runs best on one core): while one worker trains, another compiles
its next bucket. Scheduling never changes a result: every number depends only on the cell.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits

from jaxbof import metrics
from jaxbof.data import sample_train
from jaxbof.grid import Cell, Grid, Protocol, cell_coords, choose_param
from jaxbof.model import init_weights, outer_weights
from jaxbof.train import (Hyper, Param, TrainState, direct_problem, final_outputs, gd_step,
                          gram_problem, hinge_loss_from_outputs, init_state)
from jaxbof.numerics import matmul_t


# ----------------------------------------------------------------------------- device programs


class Extras(NamedTuple):
    """Per-model quantities the final measurements need (never d-sized in the Gram case)."""

    S0_mxm: jax.Array  # W_0 W_0^T
    W0v_m: jax.Array  # W_0 v
    Xv_n: jax.Array  # X v
    v_d: jax.Array | None  # signal vector (direct parameterization only)
    y_true_n: jax.Array
    corrupt_n: jax.Array
    gamma: jax.Array
    d: jax.Array
    test_key: jax.Array


class Slot(NamedTuple):
    problem: object  # train.Problem
    state: TrainState
    extras: Extras


class Scalars(NamedTuple):
    """Per-cell traced inputs of `prepare` (arrays with a leading job axis)."""

    keys: jax.Array  # [3, 2]: data, init and test keys (from `cell_keys`)
    n: jax.Array
    d: jax.Array
    gamma: jax.Array
    noise_rate: jax.Array
    alpha: jax.Array
    eta: jax.Array
    init_std: jax.Array
    stop: jax.Array
    max_steps: jax.Array
    corruption: jax.Array
    signal: jax.Array
    outer: jax.Array


def cell_keys(base_key, coords):
    """Data, init and test keys of one cell from its uint32 coordinates (grid.cell_coords).

    data: (n, d, gamma, noise rate, seed); init: (d, width, seed); test: all six.
    """
    data_key, init_key, test_key = jax.random.split(base_key, 3)
    for i in (0, 1, 2, 3, 4):
        data_key = jax.random.fold_in(data_key, coords[i])
    for i in (1, 5, 4):
        init_key = jax.random.fold_in(init_key, coords[i])
    for i in range(6):
        test_key = jax.random.fold_in(test_key, coords[i])
    return jnp.stack([data_key, init_key, test_key])


def prepare(sc: Scalars, *, n_pad: int, d_pad: int, width: int, param: Param) -> Slot:
    """Sample one cell's data and initialisation and set up its training problem."""
    data_key, init_key, test_key = sc.keys
    td = sample_train(data_key, sc.n, sc.d, sc.gamma, sc.noise_rate, n_pad=n_pad, d_pad=d_pad,
                      corruption=sc.corruption, signal=sc.signal)
    W0 = init_weights(init_key, width, sc.d, sc.init_std, d_pad=d_pad)
    a = outer_weights(width, sc.outer, dtype=W0.dtype)
    hyper = Hyper(sc.alpha, sc.eta, sc.stop, sc.max_steps)
    if param == Param.GRAM:
        problem, v = gram_problem(td.X_nxd, W0, td.y_obs_n, td.mask_n, a, hyper), None
    else:
        problem, v = direct_problem(td.X_nxd, td.y_obs_n, td.mask_n, a, hyper), td.v_d
    v_1xd = td.v_d[None, :]
    extras = Extras(matmul_t(W0, W0), matmul_t(W0, v_1xd)[:, 0], matmul_t(td.X_nxd, v_1xd)[:, 0], v,
                    td.y_true_n, td.corrupt_n, sc.gamma, sc.d, test_key)
    return Slot(problem, init_state(problem, W0), extras)


def crop(slot: Slot, n: int, d: int) -> Slot:
    """Cut a slot prepared at a larger (n_pad, d_pad) down to (n, d). Exact: data are padded
    with zeros and drawn so that the small draw is a prefix of the large one (data.py)."""
    p, st, ex = slot.problem, slot.state, slot.extras
    direct = p.X_nxd is not None
    p = p._replace(y_n=p.y_n[:n], mask_n=p.mask_n[:n],
                   X_nxd=p.X_nxd[:n, :d] if direct else None,
                   G_nxn=None if direct else p.G_nxn[:n, :n],
                   H0_nxm=None if direct else p.H0_nxm[:n])
    st = st._replace(theta=st.theta[:, :d] if direct else st.theta[:n], f_n=st.f_n[:n])
    ex = ex._replace(Xv_n=ex.Xv_n[:n], y_true_n=ex.y_true_n[:n], corrupt_n=ex.corrupt_n[:n],
                     v_d=ex.v_d[:d] if direct else None)
    return Slot(p, st, ex)


def cycle(slots: Slot, fresh: Slot, load_b, src_b, keep_b, num_steps):
    """One scheduling cycle of a bucket, batched over B slots:

    1. load rows src_b of a freshly prepared batch into the slots where load_b (cropping it to the
       bucket's shape), 2. freeze slots without a job (keep_b False), 3. run up to num_steps GD
    steps in lock-step, returning early once all are done. Returns (slots, steps executed).
    """
    X = slots.problem.X_nxd
    n, d = slots.extras.Xv_n.shape[1], None if X is None else X.shape[2]
    fresh = jax.vmap(lambda s: crop(s, n, d))(fresh)

    def pick(old, new):
        return jnp.where(load_b.reshape((-1,) + (1,) * (old.ndim - 1)), new[src_b], old)

    slots = jax.lax.cond(jnp.any(load_b), lambda: jax.tree.map(pick, slots, fresh), lambda: slots)
    st = slots.state
    slots = slots._replace(state=st._replace(done=st.done | ~keep_b))

    def cond(carry):
        state, i = carry
        return (i < num_steps) & ~jnp.all(state.done)

    def body(carry):  # only the training state is carried; the problem is loop-invariant
        state, i = carry
        return jax.vmap(gd_step)(slots.problem, state), i + 1

    state, iters = jax.lax.while_loop(cond, body, (slots.state, jnp.zeros((), jnp.int32)))
    return slots._replace(state=state), iters


def measure_train(slot: Slot) -> dict:
    """Training-set measurements and the moments WWt = W W^T, Wv = W v of one trained model
    (device version, one model; the sweep uses measure_train_host, tested equal)."""
    p, st, ex = slot.problem, slot.state, slot.extras
    f = final_outputs(p, st.theta)
    if p.X_nxd is None:
        WWt, Wv = metrics.gram_moments(st.theta.T, p.G_nxn, p.H0_nxm, ex.S0_mxm, ex.W0v_m, ex.Xv_n)
    else:
        WWt, Wv = metrics.direct_moments(st.theta, ex.v_d)
    fit = (f * p.y_n > 0) & ex.corrupt_n
    out = dict(
        train_error=metrics.error_rate(f, p.y_n, p.mask_n),
        train_error_clean=metrics.error_rate(f, ex.y_true_n, p.mask_n),
        hinge_loss=hinge_loss_from_outputs(f, p.y_n, p.mask_n),
        min_margin=jnp.min(jnp.where(p.mask_n, f * p.y_n, jnp.inf)),
        n_corrupt=jnp.sum(ex.corrupt_n),
        corrupt_fit=jnp.sum(fit) / jnp.maximum(jnp.sum(ex.corrupt_n), 1),
        WWt=WWt, Wv=Wv,
    )
    return out


def measure_train_host(slots: Slot, s: int) -> dict:
    """measure_train for slot s of a batch, on the host in float64 from the state's outputs f and
    (Gram case) C, G, H_0: cheap for the few slots that stop in a chunk, and nothing to compile."""
    p, st, ex = slots.problem, slots.state, slots.extras
    f64 = lambda x: np.asarray(x)[s].astype(np.float64)  # noqa: E731
    mask = np.asarray(p.mask_n)[s]
    f, y, y_true = f64(st.f_n)[mask], f64(p.y_n)[mask], f64(ex.y_true_n)[mask]
    corrupt = np.asarray(ex.corrupt_n)[s][mask]
    if p.G_nxn is not None:
        WWt, Wv = metrics.gram_moments(f64(st.theta).T, f64(p.G_nxn), f64(p.H0_nxm), f64(ex.S0_mxm),
                                       f64(ex.W0v_m), f64(ex.Xv_n))
    else:
        WWt, Wv = metrics.direct_moments(f64(st.theta), f64(ex.v_d))
    margins = y * f
    pred = np.where(f > 0, 1.0, -1.0)
    k = int(corrupt.sum())
    return dict(
        train_error=float(np.mean(pred != y)),
        train_error_clean=float(np.mean(pred != y_true)),
        hinge_loss=float(np.sum(np.maximum(0.0, 1.0 - margins))),
        min_margin=float(margins.min()),
        n_corrupt=k,
        corrupt_fit=float(np.sum((margins > 0) & corrupt) / max(k, 1)),
        WWt=WWt, Wv=Wv,
    )


def measure_weights(WWt, Wv, a_m, alpha, gamma, d, test_key, n_test: int) -> dict:
    """Theory quantities and the Monte Carlo test error from the moments (no n- or d-sized input)."""
    ws = metrics.weight_stats(WWt, Wv, a_m, alpha)
    err = metrics.test_error_mc(test_key, WWt, Wv, a_m, alpha, gamma, d, n_test)
    return dict(test_error=err, **ws._asdict())


# ----------------------------------------------------------------------------- scheduling


@dataclasses.dataclass(frozen=True)
class Engine:
    """How a sweep is executed. None of these changes any result."""

    slots: int | None = None  # models trained in lock-step per bucket; None: by platform
    chunk: int = 64  # GD steps between host checks
    compile_ahead: bool = True  # compile the next buckets on a second thread while training
    max_margin: bool = True  # compute ||w*|| and the linear baseline (host, float64)

    def __post_init__(self):
        for name in ("slots", "chunk"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name}={v!r} must be >= 1")


class SweepStats(NamedTuple):
    models: int
    wall_s: float
    compile_s: float  # summed over programs; overlaps training when compiled ahead
    flops_executed: float  # GD-step FLOPs run, padding and idle slots included
    flops_useful: float  # GD-step FLOPs of the cheapest exact algorithm for the steps needed
    buckets: int


def step_flops(param: Param, n: int, d: int, width: int) -> float:
    """FLOPs of one GD step (its dense products): 2 n^2 M (Gram) or 4 n d M (direct)."""
    return 2.0 * n * n * width if param == Param.GRAM else 4.0 * n * d * width


def _scalars(cells: Sequence[Cell], keys, protocol: Protocol, dtype) -> Scalars:
    def arr(f, dt=dtype):
        return np.array([f(c) for c in cells], dt)
    return Scalars(
        keys=keys,
        n=arr(lambda c: c.n, np.int32), d=arr(lambda c: c.d, np.int32),
        gamma=arr(lambda c: c.gamma), noise_rate=arr(lambda c: c.noise_rate),
        alpha=arr(lambda c: c.alpha),
        eta=arr(lambda c: protocol.lr_scale / (c.width * c.n)),
        init_std=arr(lambda c: protocol.init_scale / (c.width * math.sqrt(c.d))),
        stop=arr(lambda c: int(protocol.stop), np.int32),
        max_steps=arr(lambda c: protocol.max_steps, np.int32),
        corruption=arr(lambda c: int(protocol.corruption), np.int32),
        signal=arr(lambda c: int(protocol.signal), np.int32),
        outer=arr(lambda c: int(protocol.outer), np.int32),
    )


def default_slots() -> int:
    """Models per compiled batch: a few on CPU (the step already fills the core), many on
    accelerators (one big batch)."""
    return 8 if jax.default_backend() == "cpu" else 512


class _Shape(NamedTuple):
    param: Param
    n: int
    d: int  # the bucket's d (DIRECT) or the largest d of the cells prepared at this shape
    width: int


def _prep_shapes(groups: dict[_Shape, list[Cell]]) -> dict[_Shape, _Shape]:
    """Map each bucket to the (larger) shape its cells are sampled at, so that one compiled
    sampler serves many buckets. Buckets of one (param, width), sorted by n, are cut into
    contiguous runs by dynamic programming on a cost model measured on the 2-core CPU: a
    compile (~2 s) against the extra random draws of padding (~4e7 per s, products included).
    Any choice gives the same bits (numerics.matmul_t); this only trades time."""
    compile_cost, draw_cost = 2.0, 1.0 / 4e7
    out: dict[_Shape, _Shape] = {}
    families: dict[tuple, list[_Shape]] = {}
    for b in groups:
        families.setdefault((b.param, b.width), []).append(b)
    for (param, width), bs in families.items():
        bs.sort(key=lambda b: (b.n, b.d))
        size = len(bs)

        def shape(i, j):  # buckets bs[i:j] sampled together
            return _Shape(param, max(b.n for b in bs[i:j]), max(b.d for b in bs[i:j]), width)

        def cost(i, j):
            sh = shape(i, j)
            cells = sum(len(groups[b]) for b in bs[i:j])
            return compile_cost + cells * sh.n * (sh.d + 2 + width) * draw_cost

        best, cut = [0.0] + [math.inf] * size, [0] * (size + 1)
        for j in range(1, size + 1):
            for i in range(j):
                c = best[i] + cost(i, j)
                if c < best[j]:
                    best[j], cut[j] = c, i
        j = size
        while j > 0:
            i = cut[j]
            for b in bs[i:j]:
                out[b] = shape(i, j)
            j = i
    return out


_PROGRAMS: dict = {}  # compiled programs of this process, shared by all sweeps
_PROGRAMS_LOCK = threading.Lock()


class _Compiler:
    """Ahead-of-time compiled programs, cached (for the process) by everything their compiled
    form depends on, and timed; safe across threads."""

    def __init__(self, protocol: Protocol, B: int, chunk: int, dtype):
        self.protocol, self.B, self.chunk, self.dtype = protocol, B, chunk, dtype
        self.base_key = jax.random.PRNGKey(protocol.seed)
        self._lock = threading.Lock()
        self._static = (B, chunk, jnp.dtype(dtype).name, protocol.n_test)
        self.compile_s = 0.0

    def _get(self, name, make):
        with _PROGRAMS_LOCK:
            entry = _PROGRAMS.setdefault((name, self._static), [threading.Lock(), None])
        with entry[0]:
            if entry[1] is None:
                t0 = time.perf_counter()
                entry[1] = make()
                with self._lock:
                    self.compile_s += time.perf_counter() - t0
        return entry[1]

    def _scalars_example(self, sh: _Shape) -> Scalars:
        cell = Cell(sh.n, sh.d, 1.0, 0.1, 0.1, 0.1, sh.width, 0)
        return _scalars([cell] * self.B, np.zeros((self.B, 3, 2), np.uint32), self.protocol,
                        self.dtype)

    def _prepare_fn(self, sh: _Shape):
        return jax.vmap(lambda sc: prepare(sc, n_pad=sh.n, d_pad=sh.d, width=sh.width,
                                           param=sh.param))

    def keys(self):
        coords = jax.ShapeDtypeStruct((self.B, 6), jnp.uint32)
        return self._get("keys", lambda: jax.jit(jax.vmap(cell_keys, in_axes=(None, 0))).lower(
            self.base_key, coords).compile())

    def prepare(self, sh: _Shape):
        return self._get(("prepare",) + tuple(sh), lambda: jax.jit(self._prepare_fn(sh)).lower(
            self._scalars_example(sh)).compile())

    def slot_shapes(self, sh: _Shape):
        return self._get(("shapes",) + tuple(sh), lambda: jax.eval_shape(
            self._prepare_fn(sh), self._scalars_example(sh)))

    def cycle(self, bucket: _Shape, prep_shape: _Shape):
        def make():
            b = jax.ShapeDtypeStruct((self.B,), bool)
            return jax.jit(cycle).lower(self.slot_shapes(bucket), self.slot_shapes(prep_shape),
                                        b, jax.ShapeDtypeStruct((self.B,), jnp.int32), b,
                                        jnp.int32(self.chunk)).compile()
        return self._get(("cycle",) + tuple(bucket) + tuple(prep_shape), make)

    def weights(self, width: int, dtype):
        def make():
            n_test = self.protocol.n_test
            f = jax.vmap(lambda *a: measure_weights(*a, n_test))
            B, M, s = self.B, width, jax.ShapeDtypeStruct
            return jax.jit(f).lower(s((B, M, M), dtype), s((B, M), dtype), s((B, M), dtype),
                                    s((B,), self.dtype), s((B,), self.dtype), s((B,), jnp.int32),
                                    s((B, 2), jnp.uint32)).compile()
        return self._get(("weights", width, jnp.dtype(dtype).name), make)


def run_cells(cells: Sequence[Cell], protocol: Protocol = Protocol(), engine: Engine = Engine(), *,
              on_rows: Callable[[list[dict]], None] | None = None,
              dtype=jnp.float32) -> tuple[list[dict], SweepStats]:
    """Train every cell once and measure it. Returns (rows, stats). Rows arrive in completion
    order; `on_rows` is called with each batch of finished rows as soon as they are measured, so
    a caller can save them before the sweep ends."""
    t_start = time.perf_counter()
    groups: dict[_Shape, list[Cell]] = {}
    for c in cells:
        param = choose_param(c, protocol)
        groups.setdefault(_Shape(param, c.n, c.d if param == Param.DIRECT else 0, c.width),
                          []).append(c)
    groups = {(b._replace(d=max(c.d for c in g)) if b.param == Param.GRAM else b): g
              for b, g in groups.items()}
    prep_shape = _prep_shapes(groups)
    slots = engine.slots or default_slots()
    B = min(slots, max((len(g) for g in groups.values()), default=1))
    compiler = _Compiler(protocol, B, engine.chunk, dtype)

    rows: list[dict] = []
    flops = [0.0, 0.0]

    def emit(new_rows, fe, fu):
        rows.extend(new_rows)
        flops[0] += fe
        flops[1] += fu
        if on_rows is not None and new_rows:
            on_rows(new_rows)

    def cost(b):  # biggest buckets first, so the last bucket to finish is a short one
        return sum(step_flops(b.param, c.n, c.d, c.width) * c.n for c in groups[b])

    order = sorted(groups, key=cost, reverse=True)

    def compile_bucket(b):
        shapes = compiler.slot_shapes(b)
        return (compiler.keys(), compiler.prepare(prep_shape[b]), compiler.cycle(b, prep_shape[b]),
                compiler.weights(b.width, shapes.extras.S0_mxm.dtype), shapes)

    # Compile ahead on a second thread (XLA compiles without the GIL) while buckets train here.
    # The host's float64 measurements are tiny: one BLAS thread, so that BLAS workers do not
    # spin against XLA's threads for the cores.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with threadpool_limits(1, user_api="blas"):
            compiled = [pool.submit(compile_bucket, b) if engine.compile_ahead else None
                        for b in order]
            for b, fut in zip(order, compiled):
                progs = fut.result() if fut is not None else compile_bucket(b)
                _run_bucket(b, groups[b], compiler.B, protocol, engine, progs, dtype, emit,
                            compiler.base_key)
    finally:  # an interrupted sweep does not wait for compiles it will not use
        pool.shutdown(wait=False, cancel_futures=True)
    stats = SweepStats(len(rows), time.perf_counter() - t_start, compiler.compile_s, flops[0],
                       flops[1], len(groups))
    return rows, stats


def _run_bucket(bucket: _Shape, group: list[Cell], B: int, protocol: Protocol, engine: Engine,
                programs, dtype, emit, base_key):
    keys_fn, prep, cycle_fn, weights_fn, slot_shapes = programs
    pending = deque(group)
    def launch():  # dispatch (asynchronously) the sampling of the next B queued cells
        if not pending:
            return None
        cells = [pending.popleft() for _ in range(min(B, len(pending)))]
        padded = cells + [cells[0]] * (B - len(cells))
        keys = keys_fn(base_key, np.stack([cell_coords(c) for c in padded]))
        return cells, prep(_scalars(padded, keys, protocol, dtype))

    fresh, fresh_cells, fresh_pos = None, [], 0
    upcoming = launch()
    slot_cell: list[Cell | None] = [None] * B
    slots = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), slot_shapes)
    per_step = step_flops(bucket.param, bucket.n, bucket.d, bucket.width)
    while True:
        load = np.zeros(B, bool)
        src = np.zeros(B, np.int32)
        free = [s for s in range(B) if slot_cell[s] is None]
        if free and fresh_pos >= len(fresh_cells) and upcoming is not None:
            (fresh_cells, fresh), fresh_pos = upcoming, 0
            upcoming = launch()  # sampled while the coming chunks train
        while free and fresh_pos < len(fresh_cells):
            s = free.pop(0)
            load[s], src[s], slot_cell[s] = True, fresh_pos, fresh_cells[fresh_pos]
            fresh_pos += 1
        occupied = np.array([c is not None for c in slot_cell])
        if not occupied.any():
            return
        slots, iters = cycle_fn(slots, fresh, load, src, occupied, np.int32(engine.chunk))
        flops_exec = int(iters) * B * per_step
        done = np.asarray(slots.state.done) & occupied
        if not done.any():
            emit([], flops_exec, 0.0)
            continue
        finished = np.flatnonzero(done)
        train = {s: measure_train_host(slots, s) for s in finished}
        M = bucket.width
        WWt = np.zeros((B, M, M), slot_shapes.extras.S0_mxm.dtype)
        Wv = np.zeros((B, M), WWt.dtype)
        for s in finished:
            WWt[s], Wv[s] = train[s].pop("WWt"), train[s].pop("Wv")
        p, ex = slots.problem, slots.extras
        w_out = jax.tree.map(np.asarray, weights_fn(WWt, Wv, p.a_m, p.hyper.alpha, ex.gamma, ex.d,
                                                    ex.test_key))
        st = jax.tree.map(np.asarray, slots.state)
        y, xv = np.asarray(p.y_n), np.asarray(ex.Xv_n)
        G = np.asarray(p.G_nxn) if p.G_nxn is not None else None
        X = np.asarray(p.X_nxd) if p.X_nxd is not None else None
        new_rows, flops_use = [], 0.0
        for s in finished:
            cell = slot_cell[s]
            flops_use += int(st.steps[s]) * step_flops(bucket.param, cell.n, cell.d, cell.width)
            if G is not None:
                Gs = G[s, :cell.n, :cell.n]
            else:
                Xs = X[s, :cell.n, :cell.d].astype(np.float64)
                Gs = Xs @ Xs.T
            out = {**train[s], **{k: v[s] for k, v in w_out.items()}}
            new_rows.append(_row(cell, bucket.param, protocol, engine, st, out, s, Gs,
                                 y[s, :cell.n], xv[s, :cell.n]))
            slot_cell[s] = None
        emit(new_rows, flops_exec, flops_use)


def _row(cell: Cell, param: Param, protocol: Protocol, engine: Engine, st, out, s, G, y, xv) -> dict:
    row = dict(cell._asdict())
    row.update(param=param.name.lower(), steps=int(st.steps[s]), converged=bool(st.converged[s]),
               diverged=bool(st.diverged[s]))
    for k, v in out.items():
        row[k] = int(v) if k == "n_corrupt" else float(v)
    if engine.max_margin:
        mm = metrics.max_margin(G, y)
        row["wstar_norm"] = mm.norm if mm.ok else math.nan
        row["linear_test_error"] = metrics.max_margin_linear_error(mm, y, xv, cell.gamma, cell.d)
    else:
        row["wstar_norm"] = row["linear_test_error"] = math.nan
    row["margin_factor"] = row["w_norm"] / row["wstar_norm"]
    eta = protocol.lr_scale / (cell.width * cell.n)
    row.update(metrics.implied_constants(
        w_norm=row["w_norm"], wstar_norm=row["wstar_norm"], steps=row["steps"], eta=eta,
        alpha=cell.alpha, width=cell.width, gamma=cell.gamma, k=row["n_corrupt"], snr=row["snr"],
        d=cell.d))
    return row


def run_grid(grid: Grid, protocol: Protocol = Protocol(), engine: Engine = Engine(), *,
             skip: Iterable[Cell] = (), on_rows=None, dtype=jnp.float32):
    """Run every cell of `grid` not in `skip` (e.g. cells already on disk). Returns (rows, stats)."""
    done = set(skip)
    cells = [c for c in grid.cells() if c not in done]
    return run_cells(cells, protocol, engine, on_rows=on_rows, dtype=dtype)
