"""Regression experiment (Park et al. 2024, arXiv 2410.06191) as an `engine.Experiment`.

A two-layer ReLU net in the NTK parameterisation (`jaxbof.model`),

    f(x) = M^{-1/2} sum_j a_j relu(<w_j, x> [+ b_j]),   w_j ~ N(0, I_d), a_j = +-1, b_j ~ N(0, 1),

antisymmetric (f_0 = 0) or Gaussian init, is trained by full-batch GD of step eta on the square
loss L = (1/(2n)) sum_i (f(x_i) - y_i)^2 (time t = eta * steps, approximating gradient flow).
Only W is trained by default; b is trained with W when the cell has a bias, a when train_outer.
Data: x_i uniform on S^{d-1} (`sphere.uniform`), y_i = f*(x_i) + noise with
f* = sum_k c_k Y_k(x; xi_k), Y_k(x; xi) = sqrt(N(d, k)) P_k(<x, xi>) unit-norm zonal harmonics
(`sphere.zonal_features`), noise uniform on [-s, s] or +-s (Rademacher); labels are NOT clipped
(|y| may exceed 1; the spec's boundedness holds for the noise, which is what the theory uses).

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

import dataclasses
import functools
import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

from jaxbof import engine as _engine
from jaxbof import ntk, optim, sphere, spectra, train
from jaxbof.model import TwoLayerParams, init_two_layer, leaky_relu, readout, two_layer_apply
from jaxbof.experiments.regression.schema import COORDINATES, INITS, KIND, NOISE_KINDS
from jaxbof.numerics import float32_bits

__all__ = [
    "COORDINATES", "INITS", "KIND", "NOISE_KINDS", "PROTOCOL_FULL", "PROTOCOL_QUICK", "Cell",
    "Data", "Inputs", "Protocol", "Shape", "Slot", "State", "approx_error", "canonical_target",
    "cell_keys", "cell_of", "cells", "columns", "coords", "crop", "default_engine",
    "default_eta", "degrees_of", "eigenvalues_for", "experiment", "forward", "gd_step",
    "gradients", "linear_prediction", "parse_target", "prep_shapes", "prepare",
    "preset_protocol", "presets", "record_steps", "resume_slot", "run_cells", "step_bytes",
    "step_flops", "train_step",
]

_SENTINEL = np.iinfo(np.int32).max  # pads the recording steps: never reached
_EIGSH_ABOVE = 300  # ntk_drift: dense eigvalsh up to this n, scipy eigsh above


# ----------------------------------------------------------------------------- targets


def parse_target(text: str) -> tuple[tuple[int, float], ...]:
    """'1:0.5,2:0.5,4:0.5' -> ((1, 0.5), (2, 0.5), (4, 0.5)): f* = sum_k c_k Y_k, sorted by degree.

    Degrees are integers >= 0, each at most once; coefficients finite floats. ValueError naming
    the bad piece otherwise (and for an empty target).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"target {text!r} is empty; write it as 'k:c,k:c', e.g. '1:0.5,2:0.5'")
    pairs: dict[int, float] = {}
    for piece in text.split(","):
        parts = piece.strip().split(":")
        if len(parts) != 2:
            raise ValueError(f"target piece {piece!r} of {text!r}: expected 'degree:coefficient'")
        try:
            k_float = float(parts[0])
            k = int(parts[0])
        except ValueError:
            k_float = None
            k = None
        if k is None or k_float != k:
            raise ValueError(f"target piece {piece!r} of {text!r}: degree {parts[0]!r} is not "
                             "an integer")
        if k < 0:
            raise ValueError(f"target piece {piece!r} of {text!r}: degree {k} is negative "
                             "(degrees are integers >= 0)")
        try:
            c = float(parts[1])
        except ValueError:
            raise ValueError(f"target piece {piece!r} of {text!r}: coefficient {parts[1]!r} "
                             "is not a number") from None
        if not math.isfinite(c):
            raise ValueError(f"target piece {piece!r} of {text!r}: coefficient {c!r} is not "
                             "finite")
        if k in pairs:
            raise ValueError(f"target piece {piece!r} of {text!r}: degree {k} appears twice")
        pairs[k] = c
    return tuple(sorted(pairs.items()))


def canonical_target(pairs) -> str:
    """The canonical string of a target: degrees ascending, coefficients as repr(float)
    ('1:0.5,2:0.5,4:0.5'); `pairs` an iterable of (degree, coefficient) or a target string,
    validated by `parse_target` either way."""
    text = pairs if isinstance(pairs, str) else ",".join(f"{k}:{c}" for k, c in pairs)
    return ",".join(f"{k}:{c!r}" for k, c in parse_target(text))


# ----------------------------------------------------------------------------- cells, protocol


class Cell(NamedTuple):
    """One training run's coordinates (field order = CSV coordinate order)."""

    n: int  # training points
    d: int  # sphere S^{d-1}
    width: int  # M
    seed: int
    target: str  # canonical_target string
    noise: float  # level s
    noise_kind: str  # "uniform" (on [-s, s]) | "rademacher" (+-s)
    init: str  # "antisymmetric" | "gaussian"
    bias: bool  # b_j ~ N(0, 1), trained with W
    train_outer: bool  # a trained too


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What every cell of a sweep shares.

    eta: GD step (None: per cell, `default_eta`: 0.05 / max_k mu_k of the trained-layer kernel,
    so eta * lambda_max(K/n) ~ 0.05). Recording times t_r in {0} u geomspace(eta, t_max, times)
    rounded to steps (`record_steps`); n_test fresh noise-free test points; seed: base PRNG
    seed; ntk_drift at every drift_every-th record (index 0 included) and at the last one.
    """

    eta: float | None = None
    t_max: float = 2500.0
    times: int = 40
    n_test: int = 2000
    seed: int = 0
    drift_every: int = 8
    optimizer: optim.Optimizer | str = optim.GD

    def __post_init__(self):
        object.__setattr__(self, "optimizer", optim.as_optimizer(self.optimizer))
        if self.eta is not None and not (isinstance(self.eta, (int, float))
                                          and math.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta={self.eta!r} must be None or a finite float > 0")
        if not (isinstance(self.t_max, (int, float)) and math.isfinite(self.t_max)
                and self.t_max > 0):
            raise ValueError(f"t_max={self.t_max!r} must be a finite float > 0")
        for name in ("times", "n_test", "drift_every"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be an integer >= 1")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2^32)")
        if self.eta is not None and self.t_max < self.eta:
            raise ValueError(f"t_max={self.t_max!r} must be >= eta={self.eta!r}")


def _seq(x):
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        return (x,)
    return tuple(x)


def _check_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    return int(v)


def cells(n, d=3, width=1024, seeds=1, target="1:0.5,2:0.5,4:0.5", noise=0.5,
          noise_kind="uniform", init="antisymmetric", bias=False,
          train_outer=False) -> list[Cell]:
    """The cartesian product of the given values (scalars or sequences) as Cells, in Cell field
    order. seeds: a count (seeds 0..seeds-1) or a sequence of seeds. Validates n >= 1, d >= 2,
    width >= 1 (even for the antisymmetric init), seeds >= 1, noise >= 0, noise_kind and init
    names, targets (`parse_target`); ValueError naming the bad value."""
    ns = [_check_int("n", v, 1) for v in _seq(n)]
    ds = [_check_int("d", v, 2) for v in _seq(d)]
    ws = [_check_int("width", v, 1) for v in _seq(width)]
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seed_list = list(range(_check_int("seeds", seeds, 1)))
    else:
        seed_list = [_check_int("seed", v, 0) for v in _seq(seeds)]
        if not seed_list:
            raise ValueError(f"seeds={seeds!r}: need at least one seed")
    if any(s >= 2 ** 32 for s in seed_list):
        raise ValueError(f"seeds={seeds!r}: seeds must be < 2^32")
    targets = [canonical_target(t) for t in _seq(target)]
    noises = []
    for v in _seq(noise):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                or not math.isfinite(v) or v < 0:
            raise ValueError(f"noise={v!r} must be a finite float >= 0")
        noises.append(float(v))
    kinds = list(_seq(noise_kind))
    for v in kinds:
        if v not in NOISE_KINDS:
            raise ValueError(f"noise_kind={v!r}: choose from {', '.join(NOISE_KINDS)}")
    inits = list(_seq(init))
    for v in inits:
        if v not in INITS:
            raise ValueError(f"init={v!r}: choose from {', '.join(INITS)}")
    biases = [bool(v) for v in _seq(bias)]
    outers = [bool(v) for v in _seq(train_outer)]
    out = []
    for c in itertools.product(ns, ds, ws, seed_list, targets, noises, kinds, inits, biases,
                               outers):
        cell = Cell(*c)
        if cell.init == "antisymmetric" and cell.width % 2:
            raise ValueError(f"width={cell.width} must be even for the antisymmetric init")
        out.append(cell)
    return out


def record_steps(eta: float, t_max: float, times: int) -> np.ndarray:
    """Sorted unique GD steps round(t_r / eta) for t_r in {0} u geomspace(eta, t_max, times):
    the recorded times are eta * steps (step 0, the init, always first; at most times + 1)."""
    if not (math.isfinite(eta) and eta > 0):
        raise ValueError(f"eta={eta!r} must be a finite float > 0")
    if not (math.isfinite(t_max) and t_max >= eta):
        raise ValueError(f"t_max={t_max!r} must be finite and >= eta={eta!r}")
    if times < 1:
        raise ValueError(f"times={times!r} must be >= 1")
    t = np.concatenate([[0.0], np.geomspace(eta, t_max, times)])
    steps = np.unique(np.rint(t / eta).astype(np.int64))
    if steps[-1] >= _SENTINEL:
        raise ValueError(f"t_max / eta = {t_max / eta:.3g} steps exceeds int32")
    return steps


def _kernel(cell: Cell) -> spectra.Kernel:
    return spectra.Kernel.NTK_BOTH_LAYERS if cell.train_outer else spectra.Kernel.NTK_FIRST_LAYER


def eigenvalues_for(cell: Cell, k_max: int) -> np.ndarray:
    """mu_0..mu_{k_max} (float64) on S^{d-1} of the infinite-width NTK of the trained layers:
    u kappa0(u) (first layer), + kappa1(u) with train_outer, bias versions (b ~ N(0, 1) trained
    with W, rho = (1 + u)/2) when cell.bias (`spectra.eigenvalues`)."""
    return _eigenvalues(_kernel(cell), cell.d, int(k_max), bool(cell.bias))


_EIG_CACHE: dict = {}


def _eigenvalues(kernel, d, k_max, bias):
    key = (kernel, d, k_max, bias)
    if key not in _EIG_CACHE:
        mu = spectra.eigenvalues(kernel, d, k_max, bias=bias, train_bias=True).eigenvalue
        _EIG_CACHE[key] = np.asarray(mu, np.float64)
    return _EIG_CACHE[key]


def default_eta(cell: Cell) -> float:
    """0.05 / max_k mu_k (k <= 16) of the trained-layer kernel: eta lambda_max(K/n) ~ 0.05, where
    GD follows the gradient flow closely (first layer, d = 3: 0.05 / mu_1 = 0.6)."""
    return 0.05 / float(np.max(eigenvalues_for(cell, 16)))


def _eta(cell: Cell, protocol: Protocol) -> float:
    return float(protocol.eta) if protocol.eta is not None else default_eta(cell)


def _noise_var(cell: Cell) -> float:
    return cell.noise ** 2 / 3.0 if cell.noise_kind == "uniform" else cell.noise ** 2


def coords(cell: Cell) -> np.ndarray:
    """uint32[10] folded into the keys: d, seed, n, width, crc32(target), bits(noise),
    noise_kind, init, bias, train_outer."""
    return np.array([cell.d, cell.seed, cell.n, cell.width,
                     zlib.crc32(cell.target.encode()), float32_bits(cell.noise),
                     NOISE_KINDS.index(cell.noise_kind), INITS.index(cell.init), int(cell.bias),
                     int(cell.train_outer)], np.uint32)


def cell_keys(base_key, c):
    """(4, 2) keys of one cell from its coords: data (d, seed), noise (d, seed, noise,
    noise_kind), init (d, width, seed, init, bias), test (d, seed)."""
    data, noise, init, test = jax.random.split(base_key, 4)

    def fold(key, idx):
        for i in idx:
            key = jax.random.fold_in(key, c[i])
        return key
    return jnp.stack([fold(data, (0, 1)), fold(noise, (0, 1, 5, 6)), fold(init, (0, 3, 1, 7, 8)),
                      fold(test, (0, 1))])


def cell_of(row: Mapping) -> Cell:
    """The Cell of a stored row, typed exactly like `cells` builds it (equality holds)."""
    return Cell(int(row["n"]), int(row["d"]), int(row["width"]), int(row["seed"]),
                str(row["target"]), float(row["noise"]), str(row["noise_kind"]),
                str(row["init"]), bool(row["bias"]), bool(row["train_outer"]))


def degrees_of(cells_: Iterable[Cell]) -> tuple[int, ...]:
    """Sorted union of the cells' target degrees (the experiment's coef_K columns)."""
    return tuple(sorted({k for c in cells_ for k, _ in parse_target(c.target)}))


def columns(degrees: Sequence[int]) -> dict:
    """The result schema {column: type} in CSV order for an experiment with these degrees."""
    cols = dict(n="int", d="int", width="int", seed="int", target="str", noise="float",
                noise_kind="str", init="str", bias="bool", train_outer="bool", eta="float",
                step="int", t="float", final="bool", diverged="bool", train_risk="float",
                excess_risk="float", approx_error="float", estimation_error="float",
                kernel_gap="float", weight_move="float", ntk_drift="float",
                target_norm2="float", noise_var="float")
    for k in degrees:
        cols[f"coef_{k}"] = "float"
        cols[f"pop_coef_{k}"] = "float"
    return cols


# ----------------------------------------------------------------------------- device side


class Shape(NamedTuple):
    """A bucket: the compiled shape of its cells' training (also used, with bias=True, as the
    shape a family of buckets is sampled at, see `prep_shapes`)."""

    n: int
    d: int
    width: int
    bias: bool
    train_outer: bool


class Inputs(NamedTuple):
    """Per-cell traced inputs of `prepare` (host arrays with a leading cell axis B)."""

    keys: np.ndarray  # (B, 4, 2) uint32: data, noise, init, test
    eta: np.ndarray  # (B,) float
    noise: np.ndarray  # (B,) float: level s
    rademacher: np.ndarray  # (B,) bool: noise_kind
    antisymmetric: np.ndarray  # (B,) bool: init
    coef: np.ndarray  # (B, K) float: c_k over the experiment's degrees (0 where absent)
    rec_steps: np.ndarray  # (B, times + 1) int32 recording steps, padded with int32 max


class State(NamedTuple):
    """The loop-carried part of a slot (one run)."""

    W: jax.Array  # (M, d)
    b: jax.Array | None  # (M,) or None (no bias)
    a: jax.Array  # (M,)
    steps: jax.Array  # int32: GD steps taken
    done: jax.Array  # bool: halted, the host must look
    rec: jax.Array  # int32: index of the next record
    diverged: jax.Array  # bool: non-finite outputs seen
    f_n: jax.Array  # (n,) training outputs at the current params (valid when halted)
    opt: object = ()  # the update rule's state over the trained params (optax; () for GD)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Static:
    """A static (compile-time) value carried in a slot pytree: no leaves, part of its treedef."""

    value: object


class Data(NamedTuple):
    """Loop-invariant part of a slot."""

    X: jax.Array  # (n, d) training points
    u: jax.Array  # (n,) uniform [-1, 1) noise draws (Rademacher: their signs)
    y: jax.Array  # (n,) noisy labels f*(x_i) + s * noise_i
    X_test: jax.Array  # (n_test, d)
    Y_test: jax.Array  # (n_test, K) zonal features of the experiment's degrees
    xi: jax.Array  # (K, d) target directions
    raw: TwoLayerParams  # the Gaussian draw of width M (b None without a bias)
    init: TwoLayerParams  # theta_0: `raw`, or its antisymmetric version
    eta: jax.Array  # scalar
    noise: jax.Array  # scalar s
    rademacher: jax.Array  # bool
    antisymmetric: jax.Array  # bool
    coef: jax.Array  # (K,)
    rec_steps: jax.Array  # (times + 1,) int32
    train_outer: Static  # Static(bool): whether a is trained (the step needs it statically)


class Slot(NamedTuple):
    state: State
    data: Data


def _sqrt_width(M: int) -> float:
    return math.sqrt(M)


_ELEMENTWISE_D = 16  # preactivations as d broadcast products up to this d, a matmul above


def _preacts_mxn(params: TwoLayerParams, X_nxd):
    """H^T_mxn = W X^T [+ b]: for small d as the sum of d broadcast products, which XLA fuses
    into its consumers (H is never written to memory), else a matmul."""
    W, d = params.W_mxd, X_nxd.shape[-1]
    if d <= _ELEMENTWISE_D:
        Ht = W[:, 0][:, None] * X_nxd[:, 0][None, :]
        for c in range(1, d):
            Ht = Ht + W[:, c][:, None] * X_nxd[:, c][None, :]
    else:
        Ht = W @ X_nxd.T
    return Ht if params.b_m is None else Ht + params.b_m[:, None]


def forward(params: TwoLayerParams, X_nxd):
    """(Ht_mxn, At_mxn, f_n): pre-activations H^T = W X^T [+ b] (neuron-major: the layout in
    which every contraction of the step is fast under vmap on CPU), A^T = relu(H^T) and
    f = M^-1/2 sum_j a_j A_j by the net's one output reduction `model.readout` (a pair-sum,
    so f_0 = 0 bit for bit under the antisymmetric init): `model.two_layer_apply` in the
    neuron-major layout (equal to it up to rounding)."""
    Ht = _preacts_mxn(params, X_nxd)
    At = leaky_relu(Ht, 0.0)
    return Ht, At, readout(At * params.a_m[:, None], axis=0)


def gradients(params: TwoLayerParams, X_nxd, y_n, Ht, At, f) -> TwoLayerParams:
    """Hand-written gradient of L = (1/(2n)) sum_i (f(x_i) - y_i)^2 from a forward pass
    (`forward`): r = (f - y)/n, dH = (r a^T / sqrt(M)) * 1(H >= 0) (as dH^T, M x n),
    gW = dH^T X (M, d), gb = sum_i dH (M,), ga = A^T r / sqrt(M) (M,).
    Returns TwoLayerParams of gradients (gb None without a bias)."""
    M, n = Ht.shape
    r = (f - y_n) / n
    dHt = jnp.where(Ht >= 0, (params.a_m / _sqrt_width(M))[:, None] * r[None, :],
                    jnp.zeros((), Ht.dtype))
    gW = dHt @ X_nxd
    gb = None if params.b_m is None else jnp.sum(dHt, axis=1)
    ga = (At @ r) / _sqrt_width(M)
    return TwoLayerParams(gW, ga, gb)


def _halt_check(slot: Slot, st: State):
    """One forward pass of a step: (gradients, f, bad, halt). halt: already halted, at a
    recording time (steps == rec_steps[rec]) or non-finite outputs (bad)."""
    p = TwoLayerParams(st.W, st.a, st.b)
    Ht, At, f = forward(p, slot.data.X)
    bad = ~jnp.all(jnp.isfinite(f))
    halt = st.done | (st.steps == slot.data.rec_steps[st.rec]) | bad
    return gradients(p, slot.data.X, slot.data.y, Ht, At, f), f, bad, halt


def _advance(st: State, new: TwoLayerParams, opt, f, bad, halt) -> State:
    """The state after a step to the params `new` (a None: a untrained): counters and f_n
    frozen once halted."""
    return State(
        W=new.W_mxd, b=new.b_m, a=st.a if new.a_m is None else new.a_m,
        steps=st.steps + jnp.where(halt, 0, 1).astype(st.steps.dtype),
        done=halt,
        rec=st.rec,
        diverged=st.diverged | (bad & ~st.done),
        f_n=jnp.where(st.done, st.f_n, f),
        opt=opt,
    )


def _trained(W, b, a, train_outer: bool) -> TwoLayerParams:
    """The trained parameters as one pytree (a None unless train_outer; b None without a bias)."""
    return TwoLayerParams(W, a if train_outer else None, b)


def gd_step(slot: Slot, st: State) -> State:
    """One hand-written GD step of one run (the reference `train_step` is tested against;
    eta = slot.data.eta; a updated only with train_outer), or a halt: if steps ==
    rec_steps[rec] (a recording time) or the outputs are non-finite, set done (no update,
    f_n = these outputs). A halted state is returned unchanged."""
    g, f, bad, halt = _halt_check(slot, st)
    eta, outer = slot.data.eta, slot.data.train_outer.value

    def upd(x, gx):
        return None if x is None else jnp.where(halt, x, x - eta * gx)
    new = _trained(upd(st.W, g.W_mxd), upd(st.b, g.b_m), upd(st.a, g.a_m) if outer else None,
                   outer)
    return _advance(st, new, st.opt, f, bad, halt)


def _train_check(slot: Slot, st: State) -> train.Check:
    g, f, bad, halt = _halt_check(slot, st)
    outer = slot.data.train_outer.value
    return train.Check(_trained(st.W, st.b, st.a, outer), _trained(g.W_mxd, g.b_m, g.a_m, outer),
                       halt, (f, bad))


def train_step(slot: Slot, st: State, optimizer: optim.Optimizer = optim.GD) -> State:
    """One update of one run by `optimizer` (an optax rule with step size eta, `jaxbof.optim`)
    over the trained parameters, with `gd_step`'s halting rule, through the generic skeleton
    `jaxbof.train.step`; equal to `gd_step` bit for bit for the default plain GD. A halted
    state (and its rule's state) is returned unchanged."""
    return train.step(
        _train_check, lambda st, c, new, opt: _advance(st, new, opt, *c.aux, c.halt),
        lambda slot, c: slot.data.eta, optimizer)(slot, st)


def resume_slot(slot: Slot) -> Slot:
    """Continue a run halted at a record: next record, not done."""
    st = slot.state
    return slot._replace(state=st._replace(rec=st.rec + 1, done=jnp.zeros_like(st.done)))


def _layers(train_outer: bool):
    return ntk.Layers.BOTH if train_outer else ntk.Layers.FIRST


def _antisymmetric(raw: TwoLayerParams, antisymmetric) -> TwoLayerParams:
    """theta_0 from the Gaussian draw `raw` of width M: `raw` itself, or (traced flag) the
    antisymmetric init, whose neurons j < M/2 are raw's and j + M/2 their copies with a -> -a.
    Equals model.init_two_layer(key, M, d, antisymmetric=...) of the same key (its draws are
    padding-exact: the antisymmetric width-M init is built on the first M/2 Gaussian neurons)."""
    M = raw.W_mxd.shape[0]
    if M % 2:
        return raw
    h = M // 2

    def anti(x, sign):
        return None if x is None else jnp.where(
            antisymmetric, jnp.concatenate([x[:h], sign * x[:h]]), x)
    return TwoLayerParams(anti(raw.W_mxd, 1.0), anti(raw.a_m, -1.0), anti(raw.b_m, 1.0))


def _finish(X, u, X_test, Y_test, xi, raw, eta, noise, rademacher, antisymmetric, coef,
            rec_steps, sh: Shape, degrees, optimizer: optim.Optimizer = optim.GD) -> Slot:
    """The slot of one cell from its random draws at the bucket's own shape: labels
    y = f*(X) + s * noise (f* = Y(X) coef), theta_0, the initial state (f_n = 0 until the
    record at step 0 sets it; the rule's state from theta_0's trained parameters)."""
    dt = X.dtype
    fstar = sphere.zonal_features(X, xi, degrees, sh.d) @ coef
    sign = jnp.where(u >= 0, 1.0, -1.0).astype(dt)
    y = fstar + noise * jnp.where(rademacher, sign, u)
    init = _antisymmetric(raw, antisymmetric)
    opt = optim.init(optimizer, eta, _trained(init.W_mxd, init.b_m, init.a_m, sh.train_outer))
    state = State(init.W_mxd, init.b_m, init.a_m, jnp.zeros((), jnp.int32), jnp.zeros((), bool),
                  jnp.zeros((), jnp.int32), jnp.zeros((), bool), jnp.zeros((sh.n,), dt), opt)
    data = Data(X, u, y, X_test, Y_test, xi, raw, init, eta, noise, rademacher, antisymmetric,
                coef, rec_steps, Static(bool(sh.train_outer)))
    return Slot(state, data)


def prepare(inp: Inputs, sh: Shape, *, n_test: int, degrees: tuple[int, ...],
            optimizer: optim.Optimizer = optim.GD) -> Slot:
    """Sample one cell at shape `sh` (device): n training points (point i from fold_in, so a
    larger draw holds a smaller one as a prefix), one uniform [-1, 1) noise draw per point,
    n_test test points and their zonal features, one direction per degree, a Gaussian init of
    width M (neuron j from fold_in: prefix-exact too). `crop` cuts it to a smaller shape
    exactly; the empirical NTK at init is computed on the host's request (`init_fn`)."""
    dt = inp.eta.dtype
    data_key, noise_key, init_key, test_key = inp.keys
    x_key, dir_key = jax.random.fold_in(data_key, 0), jax.random.fold_in(data_key, 1)
    X = sphere.uniform(x_key, sh.n, sh.d, dtype=dt)
    xi = sphere.directions(dir_key, degrees, sh.d, dtype=dt)
    u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(noise_key, i), (), dt,
                                              -1.0, 1.0))(jnp.arange(sh.n))
    X_test = sphere.uniform(test_key, n_test, sh.d, dtype=dt)
    Y_test = sphere.zonal_features(X_test, xi, degrees, sh.d)
    raw = init_two_layer(init_key, sh.width, sh.d, bias=sh.bias, antisymmetric=False, dtype=dt)
    return _finish(X, u, X_test, Y_test, xi, raw, inp.eta, inp.noise, inp.rademacher,
                   inp.antisymmetric, inp.coef, jnp.asarray(inp.rec_steps, jnp.int32), sh,
                   degrees, optimizer)


def crop(slot: Slot, b: Shape, degrees: tuple[int, ...],
         optimizer: optim.Optimizer = optim.GD) -> Slot:
    """Cut a slot prepared at a larger shape (n_pad >= n, M_pad >= M, with a bias draw) down to
    bucket b, exactly: the first n points and noise draws, the first M Gaussian neurons (b
    dropped without a bias), then labels, theta_0 and state rebuilt at b's shape (`_finish`)."""
    d = slot.data
    raw = TwoLayerParams(d.raw.W_mxd[:b.width], d.raw.a_m[:b.width],
                         d.raw.b_m[:b.width] if b.bias else None)
    return _finish(d.X[:b.n], d.u[:b.n], d.X_test, d.Y_test, d.xi, raw, d.eta, d.noise,
                   d.rademacher, d.antisymmetric, d.coef, d.rec_steps, b, degrees, optimizer)


def prep_shapes(groups) -> dict:
    """Every bucket of one d is sampled at Shape(max n, d, max M, bias=True, False) and cropped:
    the draws are cheap (O(n d + M d) per cell) while compiling a sampler costs ~10 s on the
    2-core CPU (each threefry site compiles in ~0.7 s), so one sampler per d is best."""
    fam: dict[int, list[Shape]] = {}
    for bkt in groups:
        fam.setdefault(bkt.d, []).append(bkt)
    out = {}
    for d, bs in fam.items():
        big = Shape(max(x.n for x in bs), d, max(x.width for x in bs), True, False)
        for bkt in bs:
            out[bkt] = big
    return out


def measure_fn(W, b, a, W0, Xt):
    """(f_test (n_test,), weight_move) of one slot (engine.take): the net on the test points
    and max_j ||w_j - w_j(0)|| (device program)."""
    p = TwoLayerParams(W, a, b)
    f = two_layer_apply(p, Xt)
    move = jnp.max(jnp.sqrt(jnp.sum((W - W0) ** 2, axis=-1)))
    return f, move


def ntk_fn(W, b, a, X, *, train_outer: bool):
    """H_t (n, n): empirical NTK Gram of the trained layers at one slot's params (device)."""
    return ntk.structured_ntk(TwoLayerParams(W, a, b), X, layers=_layers(train_outer),
                              train_bias=True)


def init_fn(p: TwoLayerParams, X, Xt, *, train_outer: bool):
    """(K0 (n, n), K_test (n_test, n), f0_train (n,), f0_test (n_test,)) of one slot: the
    empirical NTK of the trained layers at theta_0 (ntk.structured_ntk) on the training points
    and test x train, and the initial outputs (0 under the antisymmetric init). Device."""
    layers = _layers(train_outer)
    return (ntk.structured_ntk(p, X, layers=layers, train_bias=True),
            ntk.structured_ntk(p, Xt, X, layers=layers, train_bias=True),
            two_layer_apply(p, X), two_layer_apply(p, Xt))


# ----------------------------------------------------------------------------- host side


def _phi(x):
    """(1 - e^{-x}) / x, = 1 at x = 0, computed stably with expm1 (float64)."""
    x = np.asarray(x, np.float64)
    safe = np.where(x == 0.0, 1.0, x)
    return np.where(np.abs(x) < 1e-12, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)


def linear_prediction(t: float, n: int, lam, P_test, z, f0_test) -> np.ndarray:
    """f_t^lin on the test points: f_0 + K_tX U diag((1 - e^{-t lam/n}) / lam) U^T (y - f_0(X))
    given K = U diag(lam) U^T, P_test = K_tX U and z = U^T (y - f_0(X)) (the linearised flow
    df/dt = -(1/n) K_.X (f(X) - y); the factor -> t/n as lam -> 0, via expm1)."""
    lam = np.asarray(lam, np.float64)
    return f0_test + P_test @ (t / n * _phi(t * lam / n) * z)


def approx_error(t: float, mu_K, c_K) -> float:
    """sum_k exp(-2 t mu_k) c_k^2: ||f_t^pop - f*||^2 of the population flow from f_0 = 0."""
    mu_K, c_K = np.asarray(mu_K, np.float64), np.asarray(c_K, np.float64)
    return float(np.sum(np.exp(-2.0 * t * mu_K) * c_K ** 2))


def _op_norm(D) -> float:
    """||D||_op of a symmetric matrix (float64): dense eigvalsh for n <= 300, else ARPACK eigsh
    from a fixed start vector (so rows are reproducible), falling back to eigvalsh."""
    D = 0.5 * (D + D.T)
    n = D.shape[0]
    if not np.any(D):
        return 0.0
    if n > _EIGSH_ABOVE:
        try:
            ev = eigsh(D, k=1, which="LM", v0=np.full(n, 1.0 / math.sqrt(n)),
                       return_eigenvectors=False)
            return float(np.max(np.abs(ev)))
        except (ArpackNoConvergence, ArpackError):  # the dense route
            pass
    return float(np.max(np.abs(np.linalg.eigvalsh(D))))


class _HostCell(NamedTuple):
    """Per-cell host data (float64), built at the cell's first report, dropped when it ends."""

    y: np.ndarray  # (n,)
    Y_test: np.ndarray  # (n_test, K)
    fstar_test: np.ndarray  # (n_test,)
    f0_test: np.ndarray  # (n_test,)
    c: np.ndarray  # (K,) coefficients over the experiment's degrees (0 where absent)
    present: np.ndarray  # (K,) bool
    mu: np.ndarray  # (K,) mu_k of the experiment's degrees
    lam: np.ndarray  # (n,) eigenvalues of K0
    P_test: np.ndarray  # (n_test, n) K_test U
    z: np.ndarray  # (n,) U^T (y - f_0(X))
    K0: np.ndarray  # (n, n)
    h0_norm: float  # ||K0||_op
    steps: np.ndarray  # recording steps
    eta: float


def _host_cell(cell: Cell, slots: Slot, s: int, degrees, protocol: Protocol,
               init_prog) -> _HostCell:
    """Host data of the cell in slot s: its labels and test features, and the eigendecomposition
    K0 = U diag(lam) U^T (float64) of the empirical NTK at init (device program `init_prog`)."""
    d = slots.data
    K0, K_test, f0_train, f0_test = (np.asarray(x, np.float64) for x in init_prog(
        *_engine.take((d.init, d.X, d.X_test), s)))
    y, Y_test = np.asarray(d.y[s], np.float64), np.asarray(d.Y_test[s], np.float64)
    K0 = 0.5 * (K0 + K0.T)
    lam, U = scipy.linalg.eigh(K0, driver="evr")  # MRRR: several times faster than evd here
    tgt = dict(parse_target(cell.target))
    c = np.array([tgt.get(k, 0.0) for k in degrees], np.float64)
    present = np.array([k in tgt for k in degrees])
    mu = eigenvalues_for(cell, max(degrees))[list(degrees)]
    eta = _eta(cell, protocol)
    return _HostCell(y, Y_test, Y_test @ c, f0_test, c, present, mu, lam, K_test @ U,
                     U.T @ (y - f0_train), K0, float(np.max(np.abs(lam))),
                     record_steps(eta, protocol.t_max, protocol.times), eta)


def _row(cell: Cell, hc: _HostCell, degrees, *, step: int, final: bool, diverged: bool,
         f_n, f_test, weight_move: float, ntk_drift: float) -> dict:
    """One row (float64): the cell's coordinates, its time t = eta * step, and the module
    docstring's measurements from the training outputs f_n and the test outputs f_test."""
    t = hc.eta * step
    n = cell.n
    decay = -np.expm1(-t * hc.mu)  # 1 - e^{-t mu_k}
    f_pop = hc.Y_test @ (decay * hc.c)
    f_lin = linear_prediction(t, n, hc.lam, hc.P_test, hc.z, hc.f0_test)
    coef = hc.Y_test.T @ f_test / len(f_test)
    row = dict(cell._asdict())
    row.update(
        eta=hc.eta, step=int(step), t=float(t), final=bool(final), diverged=bool(diverged),
        train_risk=float(np.mean((f_n - hc.y) ** 2)),
        excess_risk=float(np.mean((f_test - hc.fstar_test) ** 2)),
        approx_error=approx_error(t, hc.mu[hc.present], hc.c[hc.present]),
        estimation_error=float(np.mean((f_test - f_pop) ** 2)),
        kernel_gap=float(np.mean((f_test - f_lin) ** 2)),
        weight_move=float(weight_move), ntk_drift=float(ntk_drift),
        target_norm2=float(np.sum(hc.c ** 2)), noise_var=_noise_var(cell))
    for j, k in enumerate(degrees):
        row[f"coef_{k}"] = float(coef[j])
        row[f"pop_coef_{k}"] = float(decay[j] * hc.c[j]) if hc.present[j] else math.nan
    return row


def _measure_name(b: Shape, n_test: int, dtype) -> str:
    return f"reg_measure_{b.d}_{b.width}_{int(b.bias)}_{n_test}_{jnp.dtype(dtype).name}"


def _init_name(b: Shape, n_test: int, dtype) -> str:
    return (f"reg_init_{b.n}_{b.d}_{b.width}_{int(b.bias)}_{int(b.train_outer)}_{n_test}_"
            f"{jnp.dtype(dtype).name}")


def _ntk_name(b: Shape, dtype) -> str:
    return (f"reg_ntk_{b.n}_{b.d}_{b.width}_{int(b.bias)}_{int(b.train_outer)}_"
            f"{jnp.dtype(dtype).name}")


def step_flops(bucket: Shape, cell: Cell | None = None) -> float:
    """FLOPs of one GD step (its dense products): 4 n d M (X W^T and dH^T X), plus 2 n M for
    the outer-layer product A^T r when a is trained. Same for every cell of a bucket."""
    n, d, M = bucket.n, bucket.d, bucket.width
    return 4.0 * n * d * M + (2.0 * n * M if bucket.train_outer else 0.0)


def step_bytes(bucket: Shape, itemsize: int = 4) -> float:
    """Estimated bytes moved per GD step: about 5 passes over n x M arrays (write H, read it
    for the output and for the mask, write dH, read it for gW and gb), + 1 with train_outer
    (A^T r); the n x d and M x d arrays are negligible for small d."""
    passes = 5 + (1 if bucket.train_outer else 0)
    return float(passes * bucket.n * bucket.width * itemsize)


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
            rec[i, :len(st)] = st
            tgt = dict(parse_target(c.target))
            if not set(tgt) <= set(degrees):
                raise ValueError(f"cell target {c.target!r} has degrees outside this "
                                 f"experiment's {degrees}: build it with all cells to be run")
            coef[i] = [tgt.get(k, 0.0) for k in degrees]
        return Inputs(
            keys=np.asarray(keys),
            eta=np.array([_eta(c, protocol) for c in cs], dtype),
            noise=np.array([c.noise for c in cs], dtype),
            rademacher=np.array([c.noise_kind == "rademacher" for c in cs]),
            antisymmetric=np.array([c.init == "antisymmetric" for c in cs]),
            coef=coef, rec_steps=rec)

    opt = protocol.optimizer

    def prepare_(inp, sh: Shape):
        return prepare(inp, sh, n_test=n_test, degrees=degrees, optimizer=opt)

    def crop_(slot, b: Shape):
        return crop(slot, b, degrees, opt)

    def step(slot, st):
        return train_step(slot, st, opt)

    def example_cell(sh: Shape) -> Cell:
        return Cell(sh.n, sh.d, sh.width, 0, ",".join(f"{k}:1.0" for k in degrees), 0.1,
                    "uniform", "antisymmetric" if sh.width % 2 == 0 else "gaussian", sh.bias,
                    sh.train_outer)

    def programs(b: Shape, shapes: Slot, B: int):
        st, dt = shapes.state, shapes.data
        dtype = st.W.dtype

        def one(*args):  # one slot's arguments: measured one slot at a time (engine.take)
            return _engine.Program(args[0], jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), args[1:]), batched=False)
        out = {_measure_name(b, n_test, dtype): one(
            measure_fn, st.W, st.b, st.a, dt.init.W_mxd, dt.X_test)}
        out[_ntk_name(b, dtype)] = one(
            functools.partial(ntk_fn, train_outer=b.train_outer), st.W, st.b, st.a, dt.X)
        out[_init_name(b, n_test, dtype)] = one(
            functools.partial(init_fn, train_outer=b.train_outer), dt.init, dt.X, dt.X_test)
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
                (st.W, st.b, st.a, slots.data.init.W_mxd, slots.data.X_test, slots.data.X), s)
            f_test, move = measure(W, b_, a, W0, Xt)
            drift = math.nan
            if not diverged and (rec % protocol.drift_every == 0 or last):
                H = np.asarray(ntk_prog(W, b_, a, X), np.float64)
                drift = _op_norm(H - hc.K0) / hc.h0_norm
            out.append(_engine.Report([_row(
                cell, hc, degrees, step=int(steps_all[s]), final=finished, diverged=diverged,
                f_n=f_n, f_test=np.asarray(f_test, np.float64), weight_move=float(move),
                ntk_drift=drift)], finished))
            if finished:
                cache.pop(cell, None)
        return out

    return _engine.Experiment(
        kind=KIND, columns=columns(degrees), key_columns=COORDINATES + ("step",),
        flags={"diverged": True},
        static=(n_test, times, degrees, opt), seed=int(protocol.seed),
        coords=coords, keys=cell_keys, shape=shape, inputs=inputs, prepare=prepare_,
        step=step, example_cell=example_cell, report=report,
        step_flops=step_flops, cell_of=cell_of, final="final", prep_shapes=prep_shapes,
        crop=crop_, resume=resume_slot, programs=programs)


# ----------------------------------------------------------------------------- entry points


def default_engine() -> _engine.Engine:
    """The engine settings this experiment runs best with: one run per compiled batch on CPU
    (XLA's CPU step is no faster per run when vmapped, measured 1.0 ns per n*M element and step
    at B = 1 against 1.2 at B = 3, and the engine's B = min(slots, largest bucket) pads smaller
    buckets with idle slots that cost as much as busy ones); the engine's default elsewhere."""
    return _engine.Engine(slots=1) if jax.default_backend() == "cpu" else _engine.Engine()


def run_cells(cells: Sequence[Cell], protocol: Protocol = Protocol(),
              engine: _engine.Engine | None = None, *, on_rows=None,
              dtype=jnp.float32) -> tuple[list[dict], _engine.SweepStats]:
    """Train every cell once, recording its trajectory (engine.run; engine None:
    `default_engine()`). Returns (rows, stats): one row per cell and recorded time, in
    completion order."""
    cells = list(cells)
    exp = experiment(protocol, cells)
    return _engine.run(exp, cells, default_engine() if engine is None else engine,
                       on_rows=on_rows, dtype=dtype)


def _unique(cs: Iterable[Cell]) -> list[Cell]:
    return list(dict.fromkeys(cs))


# Preset `park-regression` (d = 3, first layer, no bias, antisymmetric; /work/shared/spec):
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
    """The cells of the `park-regression` preset (quick: 41 s on the 2-core CPU on a fast day,
    80 s on 2026-12-03 at 60 GFLOP/s dense matmul; full: about 5 minutes on the fast day). Run
    them under `preset_protocol(quick)` with `default_engine()` (the engine's CPU default of 8
    slots pads the 3-run buckets with idle slots: 1.8x the work measured on the quick preset,
    41 s against 28 s)."""
    main = "1:0.5,2:0.5,4:0.5"
    if quick:
        return _unique(cells(n=(250, 500, 1000), width=1024, seeds=2, target=main, noise=0.5)
                       + cells(n=250, width=(256, 4096), seeds=2, target=main, noise=0.5)
                       + cells(n=250, width=1024, seeds=1, target="3:1.0", noise=0.1,
                               bias=(False, True)))
    return _unique(
        cells(n=(250, 500, 1000), width=(256, 1024, 4096), seeds=3, target=main, noise=0.5)
        + cells(n=500, width=(1024, 4096), seeds=3, target=main, noise=0.5, init="gaussian")
        + cells(n=500, width=4096, seeds=3, target="3:1.0", noise=0.1, bias=(False, True))
        + cells(n=250, width=(256, 1024, 4096, 16384), seeds=3, target=main, noise=0.5))


def preset_protocol(quick: bool = False) -> Protocol:
    """The Protocol of `presets(quick)`."""
    return PROTOCOL_QUICK if quick else PROTOCOL_FULL
