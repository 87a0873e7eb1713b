"""Classification experiment (Karhadkar et al., NeurIPS 2024) as an `engine.Experiment`.

Leaky-ReLU networks trained by full-batch GD (or any optax rule, `Protocol.optimizer`) on the
summed hinge loss of noisy labels (train.py), stopped at zero training error or zero loss;
measured once, at the end: training and Monte Carlo test error, the theory quantities (margins,
SNR, max-margin norm, implied constants; metrics.py). Cells are `grid.Cell`s; buckets are (GRAM,
n, width), whose step cost does not depend on d, or (DIRECT, n, width, d). Buckets of one
(param, width) share samplers at a larger (n, d) (padding-exact draws, data.py), chosen by a
measured cost model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine as _engine
from jaxbof import optim
from jaxbof.experiments.classification import metrics
from jaxbof.experiments.classification.cells import COLUMNS, COORDINATES, KIND  # noqa: F401 - KIND re-exported
from jaxbof.experiments.classification.data import Signal, along, sample_train
from jaxbof.experiments.classification.grid import Cell, Grid, Protocol, cell_coords, choose_param
from jaxbof.experiments.classification.step import (
    Hyper,
    Param,
    TrainState,
    direct_problem,
    final_outputs,
    gram_problem,
    hinge_loss_from_outputs,
    init_state,
)
from jaxbof.experiments.classification.step import step as train_step
from jaxbof.model import init_weights, outer_weights
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


class Shape(NamedTuple):
    """A bucket: the compiled shape of its cells' training runs."""

    param: Param
    n: int
    d: int  # the bucket's d (DIRECT) or the largest d of the cells prepared at this shape
    width: int


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


def prepare(
    sc: Scalars,
    *,
    n_pad: int,
    d_pad: int,
    width: int,
    param: Param,
    optimizer=optim.GD,
    signal: Signal | jax.Array | None = None,
) -> Slot:
    """Sample one cell's data and initialisation and set up its training problem (and the
    update rule's initial state). signal: the sweep's Signal, known when compiling (it must
    equal sc.signal; the e_1 products then cost nothing), or None to read the traced sc.signal."""
    data_key, init_key, test_key = sc.keys
    signal = sc.signal if signal is None else signal
    td = sample_train(
        data_key,
        sc.n,
        sc.d,
        sc.gamma,
        sc.noise_rate,
        n_pad=n_pad,
        d_pad=d_pad,
        corruption=sc.corruption,
        signal=signal,
    )
    W0 = init_weights(init_key, width, sc.d, sc.init_std, d_pad=d_pad)
    a = outer_weights(width, sc.outer, dtype=W0.dtype)
    hyper = Hyper(sc.alpha, sc.eta, sc.stop, sc.max_steps)
    if param == Param.GRAM:
        problem, v = gram_problem(td.X_nxd, W0, td.y_obs_n, td.mask_n, a, hyper), None
    else:
        problem, v = direct_problem(td.X_nxd, td.y_obs_n, td.mask_n, a, hyper), td.v_d
    extras = Extras(
        matmul_t(W0, W0),
        along(W0, td.v_d, signal),
        along(td.X_nxd, td.v_d, signal),
        v,
        td.y_true_n,
        td.corrupt_n,
        sc.gamma,
        sc.d,
        test_key,
    )
    return Slot(problem, init_state(problem, W0, optimizer), extras)


def crop(slot: Slot, n: int, d: int, optimizer=optim.GD) -> Slot:
    """Cut a slot prepared at a larger (n_pad, d_pad) down to (n, d). Exact: data are padded
    with zeros and drawn so that the small draw is a prefix of the large one (data.py); the
    rule's state is set up afresh for the cropped parameters (no step has been taken)."""
    p, st, ex = slot.problem, slot.state, slot.extras
    direct = p.X_nxd is not None
    p = p._replace(
        y_n=p.y_n[:n],
        mask_n=p.mask_n[:n],
        X_nxd=p.X_nxd[:n, :d] if direct else None,
        G_nxn=None if direct else p.G_nxn[:n, :n],
        H0_nxm=None if direct else p.H0_nxm[:n],
    )
    theta = st.theta[:, :d] if direct else st.theta[:n]
    st = st._replace(theta=theta, f_n=st.f_n[:n], opt=optim.init(optimizer, p.hyper.eta, theta))
    ex = ex._replace(
        Xv_n=ex.Xv_n[:n],
        y_true_n=ex.y_true_n[:n],
        corrupt_n=ex.corrupt_n[:n],
        v_d=ex.v_d[:d] if direct else None,  # pyright: ignore[reportOptionalSubscript] - direct: set
    )
    return Slot(p, st, ex)


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
        WWt=WWt,
        Wv=Wv,
    )
    return out


def measure_train_host(slots: Slot, s: int) -> dict:
    """measure_train for slot s of a batch, on the host in float64 from the state's outputs f and
    (Gram case) C, G, H_0: cheap for the few slots that stop in a chunk, and nothing to compile."""
    p, st, ex = slots.problem, slots.state, slots.extras
    f64 = lambda x: np.asarray(x)[s].astype(np.float64)
    mask = np.asarray(p.mask_n)[s]
    f, y, y_true = f64(st.f_n)[mask], f64(p.y_n)[mask], f64(ex.y_true_n)[mask]
    corrupt = np.asarray(ex.corrupt_n)[s][mask]
    if p.G_nxn is not None:
        WWt, Wv = metrics.gram_moments(
            f64(st.theta).T,
            f64(p.G_nxn),
            f64(p.H0_nxm),
            f64(ex.S0_mxm),
            f64(ex.W0v_m),
            f64(ex.Xv_n),
        )
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
        WWt=WWt,
        Wv=Wv,
    )


def measure_weights(WWt, Wv, S, a_m, alpha, gamma, test_key, n_test: int) -> dict:
    """Theory quantities and the Monte Carlo test error from the moments and the noise factor
    S = metrics.noise_factor(WWt, Wv, d) (no n- or d-sized input; no library kernel)."""
    ws = metrics.weight_stats(WWt, Wv, a_m, alpha)
    err = metrics.test_error_mc_factor(test_key, S, Wv, a_m, alpha, gamma, n_test)
    return dict(test_error=err, **ws._asdict())


# ----------------------------------------------------------------------------- the experiment


def step_flops(param: Param, n: int, d: int, width: int) -> float:
    """FLOPs of one GD step (its dense products): 2 n^2 M (Gram) or 4 n d M (direct)."""
    return 2.0 * n * n * width if param == Param.GRAM else 4.0 * n * d * width


def scalars(cells: Sequence[Cell], keys, protocol: Protocol, dtype) -> Scalars:
    def arr(f, dt=dtype):
        return np.array([f(c) for c in cells], dt)

    return Scalars(
        keys=keys,
        n=arr(lambda c: c.n, np.int32),
        d=arr(lambda c: c.d, np.int32),
        gamma=arr(lambda c: c.gamma),
        noise_rate=arr(lambda c: c.noise_rate),
        alpha=arr(lambda c: c.alpha),
        eta=arr(lambda c: protocol.lr_scale / (c.width * c.n)),
        init_std=arr(lambda c: protocol.init_scale / (c.width * math.sqrt(c.d))),
        stop=arr(lambda c: int(protocol.stop), np.int32),
        max_steps=arr(lambda c: protocol.max_steps, np.int32),
        corruption=arr(lambda c: int(protocol.corruption), np.int32),
        signal=arr(lambda c: int(protocol.signal), np.int32),
        outer=arr(lambda c: int(protocol.outer), np.int32),
    )


def prep_shapes(groups: dict[Shape, list[Cell]]) -> dict[Shape, Shape]:
    """Map each bucket to the (larger) shape its cells are sampled at, so that one compiled
    sampler serves many buckets. Buckets of one (param, width), sorted by n, are cut into
    contiguous runs by dynamic programming on a cost model measured on the 2-core CPU: a
    compile (~2 s) against the extra random draws of padding (~4e7 per s, products included).
    Any choice gives the same bits (numerics.matmul_t); this only trades time."""
    compile_cost, draw_cost = 2.0, 1.0 / 4e7
    out: dict[Shape, Shape] = {}
    families: dict[tuple, list[Shape]] = {}
    for b in groups:
        families.setdefault((b.param, b.width), []).append(b)
    for (param, width), bs in families.items():
        bs.sort(key=lambda b: (b.n, b.d))
        size = len(bs)

        def shape(i, j):  # buckets bs[i:j] sampled together
            return Shape(param, max(b.n for b in bs[i:j]), max(b.d for b in bs[i:j]), width)

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


def experiment(
    protocol: Protocol = Protocol(), *, max_margin: bool = True, cells: Iterable[Cell] = ()
) -> _engine.Experiment:
    """The classification experiment under `protocol` as the engine's `Experiment`.

    cells: the cells to be run (a GRAM bucket's d is the largest d of its cells, so the
    shapes depend on the whole set). max_margin: compute ||w*|| and the max-margin linear
    baseline per run (host, float64).
    """
    gram_d: dict[tuple, int] = {}
    for c in cells:
        if choose_param(c, protocol) == Param.GRAM:
            gram_d[(c.n, c.width)] = max(gram_d.get((c.n, c.width), 0), c.d)

    def shape(c: Cell) -> Shape:
        param = choose_param(c, protocol)
        if param == Param.DIRECT:
            return Shape(param, c.n, c.d, c.width)
        return Shape(param, c.n, gram_d.get((c.n, c.width), c.d), c.width)

    opt = protocol.optimizer

    def prepare_(sc, sh: Shape):
        return prepare(
            sc,
            n_pad=sh.n,
            d_pad=sh.d,
            width=sh.width,
            param=sh.param,
            optimizer=opt,
            signal=protocol.signal,
        )

    def crop_(slot, b: Shape):
        return crop(slot, b.n, b.d if b.param == Param.DIRECT else None, opt)

    def step(slot, state):
        return train_step(slot.problem, state, opt)

    def example_cell(sh: Shape) -> Cell:
        return Cell(sh.n, sh.d, 1.0, 0.1, 0.1, 0.1, sh.width, 0)

    def programs(b: Shape, shapes, B: int):
        n_test, M, dt = protocol.n_test, b.width, shapes.extras.S0_mxm.dtype
        sdt, s = shapes.extras.gamma.dtype, jax.ShapeDtypeStruct
        f = jax.vmap(lambda *a: measure_weights(*a, n_test))
        args = (
            s((B, M, M), dt),
            s((B, M), dt),
            s((B, M, M), dt),
            s((B, M), dt),
            s((B,), sdt),
            s((B,), sdt),
            s((B, 2), jnp.uint32),
        )
        return {_weights_name(M, dt): (f, args)}

    def report(b: Shape, slots, idx, cells_, progs):
        fn = progs[_weights_name(b.width, slots.extras.S0_mxm.dtype)]
        return _report(b, slots, idx, cells_, fn, protocol, max_margin)

    return _engine.Experiment(
        init=prepare_,
        step=step,
        report=lambda h: report(h.bucket, h.slots, h.index, h.cells, h.programs),
        schema=_engine.Schema(COLUMNS, COORDINATES, flags={"converged": False, "diverged": True}),
        protocol=(protocol.n_test, opt, protocol.signal),
        seed=protocol.seed,
        batching=_engine.Batching(
            shape=shape,
            prep_shapes=prep_shapes,
            crop=crop_,
            programs=programs,
            step_flops=lambda b, c: step_flops(
                b.param, b.n if c is None else c.n, b.d if c is None else c.d, b.width
            ),
            # steps to zero training error grow with n: FLOPs per step times n as a run's cost
            run_cost=lambda b, c: step_flops(b.param, c.n, c.d, b.width) * c.n,
        ),
        cells=_engine.Cells(
            coords=cell_coords,
            keys=cell_keys,
            cell_of=cell_of,
            example_cell=example_cell,
            inputs=lambda cs, keys, dtype: (scalars(cs, keys, protocol, dtype),),
        ),
    )


def _weights_name(width: int, dtype) -> str:
    return f"weights_{width}_{jnp.dtype(dtype).name}"


def _report(bucket: Shape, slots, finished, cells, weights_fn, protocol, max_margin):
    # The host measurements come first and the device program last: the engine may call this
    # while the next chunk trains, and the device runs its programs in turn.
    train = {s: measure_train_host(slots, s) for s in finished}
    M = bucket.width
    WWt = np.zeros((len(slots.state.done), M, M), slots.extras.S0_mxm.dtype)
    Wv = np.zeros(WWt.shape[:2], WWt.dtype)
    S = np.zeros_like(WWt)
    for s, cell in zip(finished, cells):
        WWt[s], Wv[s] = train[s]["WWt"], train[s]["Wv"]
        S[s] = metrics.noise_factor(train[s].pop("WWt"), train[s].pop("Wv"), cell.d)
    p, ex = slots.problem, slots.extras
    st = jax.tree.map(np.asarray, slots.state)
    y, xv = np.asarray(p.y_n), np.asarray(ex.Xv_n)
    G = np.asarray(p.G_nxn) if p.G_nxn is not None else None
    X = np.asarray(p.X_nxd) if p.X_nxd is not None else None
    linear = {}
    for s, cell in zip(finished, cells):
        if not max_margin:
            linear[s] = (math.nan, math.nan)
            continue
        if G is not None:
            Gs = G[s, : cell.n, : cell.n]
        else:
            Xs = X[s, : cell.n, : cell.d].astype(np.float64)  # pyright: ignore[reportOptionalSubscript] - direct: set
            Gs = Xs @ Xs.T
        mm = metrics.max_margin(Gs, y[s, : cell.n])
        linear[s] = (
            mm.norm if mm.ok else math.nan,
            metrics.max_margin_linear_error(
                mm, y[s, : cell.n], xv[s, : cell.n], cell.gamma, cell.d
            ),
        )
    w_out = jax.tree.map(
        np.asarray, weights_fn(WWt, Wv, S, p.a_m, p.hyper.alpha, ex.gamma, ex.test_key)
    )
    out = []
    for s, cell in zip(finished, cells):
        meas = {**train[s], **{k: v[s] for k, v in w_out.items()}}
        row = _row(cell, bucket.param, protocol, st, meas, s, *linear[s])
        out.append(_engine.Report([row], True))
    return out


def _row(
    cell: Cell,
    param: Param,
    protocol: Protocol,
    st,
    out,
    s,
    wstar_norm: float,
    linear_test_error: float,
) -> dict:
    row = dict(cell._asdict())
    row.update(
        param=param.name.lower(),
        steps=int(st.steps[s]),
        converged=bool(st.converged[s]),
        diverged=bool(st.diverged[s]),
    )
    for k, v in out.items():
        row[k] = int(v) if k == "n_corrupt" else float(v)
    row["wstar_norm"], row["linear_test_error"] = wstar_norm, linear_test_error
    row["margin_factor"] = row["w_norm"] / row["wstar_norm"]
    eta = protocol.lr_scale / (cell.width * cell.n)
    row.update(
        metrics.implied_constants(
            w_norm=row["w_norm"],
            wstar_norm=row["wstar_norm"],
            steps=row["steps"],
            eta=eta,
            alpha=cell.alpha,
            width=cell.width,
            gamma=cell.gamma,
            k=row["n_corrupt"],
            snr=row["snr"],
            d=cell.d,
        )
    )
    if protocol.optimizer != optim.GD:  # Thm 3.1's step count is a statement about GD only
        row["thm31_steps_C"] = math.nan
    return row


# ----------------------------------------------------------------------------- entry points


def cell_of(row: Mapping) -> Cell:
    """The grid.Cell of a stored row, typed like grid.Grid.cells() builds it (equality works)."""
    return Cell(
        int(row["n"]),
        int(row["d"]),
        float(row["d_over_n"]),
        float(row["gamma"]),
        float(row["alpha"]),
        float(row["noise_rate"]),
        int(row["width"]),
        int(row["seed"]),
    )


def completed_cells(rows: Iterable[Mapping]) -> set:
    """Cells with a stored row, converged or not (a rerun would reproduce the same result)."""
    return {cell_of(r) for r in rows}


def run_cells(
    cells: Sequence[Cell],
    protocol: Protocol = Protocol(),
    engine: _engine.Engine = _engine.Engine(),
    *,
    max_margin: bool = True,
    on_rows=None,
    dtype=jnp.float32,
) -> tuple[list[dict], _engine.SweepStats]:
    """Train every cell once and measure it (engine.run). Returns (rows, stats)."""
    cells = list(cells)
    exp = experiment(protocol, max_margin=max_margin, cells=cells)
    return _engine.run(exp, cells, engine, on_rows=on_rows, dtype=dtype)


def run_grid(
    grid: Grid,
    protocol: Protocol = Protocol(),
    engine: _engine.Engine = _engine.Engine(),
    *,
    skip: Iterable[Cell] = (),
    max_margin: bool = True,
    on_rows=None,
    dtype=jnp.float32,
):
    """Run every cell of `grid` not in `skip` (e.g. cells on disk). Returns (rows, stats)."""
    done = set(skip)
    cells = [c for c in grid.cells() if c not in done]
    return run_cells(cells, protocol, engine, max_margin=max_margin, on_rows=on_rows, dtype=dtype)
