"""Regression experiment (Park et al. 2024, arXiv 2410.06191) as an `engine.Experiment`: the
wiring of its parts (grid: cells and protocol; data: sampling; step: the GD step; measure: the
report's programs and closed forms), the presets, and the package's API (re-exported here).

A two-layer ReLU net in the NTK parameterisation (`jaxbof.model`),

    f(x) = M^{-1/2} sum_j a_j relu(<w_j, x> [+ b_j]),   w_j ~ N(0, I_d), a_j = +-1, b_j ~ N(0, 1),

antisymmetric (f_0 = 0) or Gaussian init, is trained by full-batch GD of step eta on the square
loss L = (1/(2n)) sum_i (f(x_i) - y_i)^2 (time t = eta * steps, approximating gradient flow).
Only W is trained by default; b is trained with W when the cell has a bias, a when train_outer.
Data: x_i uniform on S^{d-1} (`sphere.uniform`), y_i = f*(x_i) + noise with
f* = sum_k c_k Y_k(x; xi_k), Y_k(x; xi) = sqrt(N(d, k)) P_k(<x, xi>) unit-norm zonal harmonics
(`sphere.zonal_features`), noise uniform on [-s, s] or +-s (Rademacher); labels are NOT clipped
(|y| may exceed 1; the theory's boundedness assumption is on the noise, which is what it uses).

Each run is recorded on a log-spaced set of times (one row per cell and time) and measured
against the closed forms of the population flow df/dt = -(K_inf)(f - f*):

    approx_error(t)     = ||f_t^pop - f*||^2 = sum_k exp(-2 t mu_k) c_k^2,
    f_t^pop             = sum_k (1 - exp(-t mu_k)) c_k Y_k,
    estimation_error(t) = ||f_t - f_t^pop||^2,  excess_risk(t) = ||f_t - f*||^2 (Monte Carlo on
                          fresh noise-free test points, the same at every time),
    kernel_gap(t)       = ||f_t - f_t^lin||^2,
                          f_t^lin = f_0 + K_tX K^-1 (I - e^{-t K/n}) (y - f_0(X))
                          with K the empirical NTK at init,

mu_k the eigenvalues (`jaxbof.spectra`) of the infinite-width NTK of the trained layers, plus
the NTK-regime diagnostics weight_move = max_j ||w_j(t) - w_j(0)|| and
ntk_drift = ||H_t - H_0||_op / ||H_0||_op (H_t the empirical NTK Gram on the training points).

Engine wiring: buckets are Shape(n, d, width, bias, train_outer); eta, the init kind, the
noise and the recording steps are traced per cell, so cells of one shape share one compile.
All buckets of one d draw their random numbers with one compiled sampler at the largest (n, M)
of the sweep (`prep_shapes`) and are cut down exactly (`crop`: every draw is per point or per
neuron, so a larger draw holds a smaller one as a prefix): a sampler costs ~10 s to compile on
the 2-core CPU, the draws themselves almost nothing. Keys are fold_in of the cell's
coordinates: points and target directions from (d, seed) (nested data sets across n), noise
from (d, seed, noise, noise_kind), init from (d, width, seed, init, bias), test points from
(d, seed); adding a cell never changes another's rows (tested bit for bit, also across batch
sizes and sampler shapes). Per-record measurements run on the host in float64 from small device
programs (`programs`): the net on the test points, the empirical NTK at init (once per cell,
eigendecomposed and cached until the cell finishes) and at drift records.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine as _engine
from jaxbof.experiments.regression.data import crop, prep_shapes, prepare
from jaxbof.experiments.regression.grid import (
    _SENTINEL,
    Cell,
    Protocol,
    _eta,
    canonical_target,
    cell_keys,
    cell_of,
    cells,
    columns,
    coords,
    default_eta,
    degrees_of,
    eigenvalues_for,
    parse_target,
    record_steps,
)
from jaxbof.experiments.regression.measure import (
    _host_cell,
    _init_name,
    _measure_name,
    _ntk_name,
    _op_norm,
    _row,
    approx_error,
    init_fn,
    linear_prediction,
    measure_fn,
    ntk_fn,
    step_bytes,
    step_flops,
)
from jaxbof.experiments.regression.schema import COORDINATES, INITS, KIND, NOISE_KINDS
from jaxbof.experiments.regression.step import (
    Data,
    Inputs,
    Shape,
    Slot,
    State,
    forward,
    gd_step,
    gradients,
    resume_slot,
    train_step,
)

__all__ = [
    "COORDINATES",
    "INITS",
    "KIND",
    "NOISE_KINDS",
    "PROTOCOL_FULL",
    "PROTOCOL_QUICK",
    "Cell",
    "Data",
    "Inputs",
    "Protocol",
    "Shape",
    "Slot",
    "State",
    "approx_error",
    "canonical_target",
    "cell_keys",
    "cell_of",
    "cells",
    "columns",
    "coords",
    "crop",
    "default_engine",
    "default_eta",
    "degrees_of",
    "eigenvalues_for",
    "experiment",
    "forward",
    "gd_step",
    "gradients",
    "linear_prediction",
    "parse_target",
    "prep_shapes",
    "prepare",
    "preset_protocol",
    "presets",
    "record_steps",
    "resume_slot",
    "run_cells",
    "step_bytes",
    "step_flops",
    "train_step",
]


# ----------------------------------------------------------------------------- the experiment


def experiment(protocol: Protocol = Protocol(), cells: Iterable[Cell] = ()) -> _engine.Experiment:
    """The regression experiment under `protocol` as the engine's `Experiment`.

    cells: the cells to be run (the coef_K columns are the sorted union of their target
    degrees, so the schema depends on the whole set; pass the same set to engine.run).
    """
    cells = list(cells)
    if not cells:
        raise ValueError("experiment needs the cells to be run (their degrees make the schema)")
    for c in cells:
        if not isinstance(c, Cell):
            raise ValueError(f"cell {c!r} is not a regression.Cell")
    degrees = degrees_of(cells)
    n_test, times = int(protocol.n_test), int(protocol.times)
    cache: dict = {}  # cell -> _HostCell, while the cell runs

    def shape(c: Cell) -> Shape:
        return Shape(c.n, c.d, c.width, c.bias, c.train_outer)

    def inputs(cs, keys, dtype) -> Inputs:
        B = len(cs)
        rec = np.full((B, times + 1), _SENTINEL, np.int32)
        coef = np.zeros((B, len(degrees)), dtype)
        for i, c in enumerate(cs):
            st = record_steps(_eta(c, protocol), protocol.t_max, times)
            rec[i, : len(st)] = st
            tgt = dict(parse_target(c.target))
            if not set(tgt) <= set(degrees):
                raise ValueError(
                    f"cell target {c.target!r} has degrees outside this "
                    f"experiment's {degrees}: build it with all cells to be run"
                )
            coef[i] = [tgt.get(k, 0.0) for k in degrees]
        return Inputs(
            keys=np.asarray(keys),
            eta=np.array([_eta(c, protocol) for c in cs], dtype),
            noise=np.array([c.noise for c in cs], dtype),
            rademacher=np.array([c.noise_kind == "rademacher" for c in cs]),
            antisymmetric=np.array([c.init == "antisymmetric" for c in cs]),
            coef=coef,
            rec_steps=rec,
        )

    opt = protocol.optimizer

    def prepare_(inp, sh: Shape):
        return prepare(inp, sh, n_test=n_test, degrees=degrees, optimizer=opt)

    def crop_(slot, b: Shape):
        return crop(slot, b, degrees, opt)

    def step(slot, st):
        return train_step(slot, st, opt)

    def example_cell(sh: Shape) -> Cell:
        return Cell(
            sh.n,
            sh.d,
            sh.width,
            0,
            ",".join(f"{k}:1.0" for k in degrees),
            0.1,
            "uniform",
            "antisymmetric" if sh.width % 2 == 0 else "gaussian",
            sh.bias,
            sh.train_outer,
        )

    def programs(b: Shape, shapes: Slot, B: int):
        st, dt = shapes.state, shapes.data
        dtype = st.W.dtype

        def one(*args):  # one slot's arguments: measured one slot at a time (engine.take)
            return _engine.Program(
                args[0],
                jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), args[1:]),
                batched=False,
            )

        out = {
            _measure_name(b, n_test, dtype): one(
                measure_fn, st.W, st.b, st.a, dt.init.W_mxd, dt.X_test
            )
        }
        out[_ntk_name(b, dtype)] = one(
            functools.partial(ntk_fn, train_outer=b.train_outer), st.W, st.b, st.a, dt.X
        )
        out[_init_name(b, n_test, dtype)] = one(
            functools.partial(init_fn, train_outer=b.train_outer), dt.init, dt.X, dt.X_test
        )
        return out

    def report(b: Shape, slots: Slot, idx, cells_, progs):
        dtype = slots.state.W.dtype
        measure = progs[_measure_name(b, n_test, dtype)]
        ntk_prog = progs[_ntk_name(b, dtype)]
        init_prog = progs[_init_name(b, n_test, dtype)]
        st = slots.state
        f_n_all = np.asarray(st.f_n, np.float64)
        steps_all, rec_all = np.asarray(st.steps), np.asarray(st.rec)
        div_all = np.asarray(st.diverged)
        out = []
        for s, cell in zip(idx, cells_):
            f_n = f_n_all[s]
            hc = cache.get(cell)
            if hc is None:
                hc = cache[cell] = _host_cell(cell, slots, s, degrees, protocol, init_prog)
            rec, diverged = int(rec_all[s]), bool(div_all[s])
            last = rec == len(hc.steps) - 1
            finished = diverged or last
            W, b_, a, W0, Xt, X = _engine.take(
                (st.W, st.b, st.a, slots.data.init.W_mxd, slots.data.X_test, slots.data.X), s
            )
            f_test, move = measure(W, b_, a, W0, Xt)
            drift = math.nan
            if not diverged and (rec % protocol.drift_every == 0 or last):
                H = np.asarray(ntk_prog(W, b_, a, X), np.float64)
                drift = _op_norm(H - hc.K0) / hc.h0_norm
            out.append(
                _engine.Report(
                    [
                        _row(
                            cell,
                            hc,
                            degrees,
                            step=int(steps_all[s]),
                            final=finished,
                            diverged=diverged,
                            f_n=f_n,
                            f_test=np.asarray(f_test, np.float64),
                            weight_move=float(move),
                            ntk_drift=drift,
                        )
                    ],
                    finished,
                )
            )
            if finished:
                cache.pop(cell, None)
        return out

    return _engine.Experiment(
        init=prepare_,
        step=step,
        report=lambda h: report(h.bucket, h.slots, h.index, h.cells, h.programs),
        schema=_engine.Schema(
            columns(degrees), COORDINATES + ("step",), final="final", flags={"diverged": True}
        ),
        protocol=(n_test, times, degrees, opt),
        seed=int(protocol.seed),
        batching=_engine.Batching(
            shape=shape,
            prep_shapes=prep_shapes,
            crop=crop_,
            resume=resume_slot,
            programs=programs,
            step_flops=step_flops,
        ),
        cells=_engine.Cells(
            coords=coords,
            keys=cell_keys,
            cell_of=cell_of,
            example_cell=example_cell,
            inputs=lambda cs, keys, dtype: (inputs(cs, keys, dtype),),
        ),
    )


# ----------------------------------------------------------------------------- entry points


def default_engine() -> _engine.Engine:
    """The engine settings this experiment runs best with: one run per compiled batch on CPU
    (XLA's CPU step is no faster per run when vmapped, measured 1.0 ns per n*M element and step
    at B = 1 against 1.2 at B = 3, and the engine's B = min(slots, largest bucket) pads smaller
    buckets with idle slots that cost as much as busy ones); the engine's default elsewhere."""
    return _engine.Engine(slots=1) if jax.default_backend() == "cpu" else _engine.Engine()


def run_cells(
    cells: Sequence[Cell],
    protocol: Protocol = Protocol(),
    engine: _engine.Engine | None = None,
    *,
    on_rows=None,
    dtype=jnp.float32,
) -> tuple[list[dict], _engine.SweepStats]:
    """Train every cell once, recording its trajectory (engine.run; engine None:
    `default_engine()`). Returns (rows, stats): one row per cell and recorded time, in
    completion order."""
    cells = list(cells)
    exp = experiment(protocol, cells)
    return _engine.run(
        exp, cells, default_engine() if engine is None else engine, on_rows=on_rows, dtype=dtype
    )


def _unique(cs: Iterable[Cell]) -> list[Cell]:
    return list(dict.fromkeys(cs))


# Preset `park-regression` (d = 3, first layer, no bias, antisymmetric):
# full (42 runs): target 1:0.5,2:0.5,4:0.5 with uniform noise 0.5, n in {250, 500, 1000} x
# M in {256, 1024, 4096} x 3 seeds; Gaussian init at n = 500, M in {1024, 4096}; the cubic
# 3:1.0 (noise 0.1) with and without a bias at n = 500, M = 4096 (with a bias eta = 0.133, so
# 4.5x the steps); the width study M in {256, ..., 16384} at n = 250. t_max = 2500 >= 2021
# (e^{-t mu_4} < 0.01, mu_4 = 0.0022786), 40 log-spaced times. Measured on the idle 2-core
# CPU, float32, default_engine(), through the CLI: 4 min 47 s wall (27 s compiling, overlapped).
# quick (12 runs): n in {250, 500, 1000} at M = 1024 and M in {256, 4096} at n = 250, 2 seeds,
# the cubic pair at n = 250, M = 1024; same t_max, 30 times: 40.6 s (14 s compiling).
PROTOCOL_FULL = Protocol(t_max=2500.0, times=40)
PROTOCOL_QUICK = Protocol(t_max=2500.0, times=30)


def presets(quick: bool = False) -> list[Cell]:
    """The cells of the `park-regression` preset (quick: 40 s to 80 s on a 2-core CPU, as its
    dense-matmul speed varies; full: about 5 minutes). Run
    them under `preset_protocol(quick)` with `default_engine()` (the engine's CPU default of 8
    slots pads the 3-run buckets with idle slots: 1.8x the work measured on the quick preset,
    41 s against 28 s)."""
    main = "1:0.5,2:0.5,4:0.5"
    if quick:
        return _unique(
            cells(n=(250, 500, 1000), width=1024, seeds=2, target=main, noise=0.5)
            + cells(n=250, width=(256, 4096), seeds=2, target=main, noise=0.5)
            + cells(n=250, width=1024, seeds=1, target="3:1.0", noise=0.1, bias=(False, True))
        )
    return _unique(
        cells(n=(250, 500, 1000), width=(256, 1024, 4096), seeds=3, target=main, noise=0.5)
        + cells(n=500, width=(1024, 4096), seeds=3, target=main, noise=0.5, init="gaussian")
        + cells(n=500, width=4096, seeds=3, target="3:1.0", noise=0.1, bias=(False, True))
        + cells(n=250, width=(256, 1024, 4096, 16384), seeds=3, target=main, noise=0.5)
    )


def preset_protocol(quick: bool = False) -> Protocol:
    """The Protocol of `presets(quick)`."""
    return PROTOCOL_QUICK if quick else PROTOCOL_FULL
