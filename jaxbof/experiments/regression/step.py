"""The regression net's training step (device, one run): slot and state types, the
neuron-major forward pass and hand-written gradient of the square loss, the halting rule, and
the GD / optax step on `jaxbof.train`'s skeleton."""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import ntk, optim, train
from jaxbof.model import TwoLayerParams, leaky_relu, readout

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
    dHt = jnp.where(
        Ht >= 0, (params.a_m / _sqrt_width(M))[:, None] * r[None, :], jnp.zeros((), Ht.dtype)
    )
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
        W=new.W_mxd,
        b=new.b_m,
        a=st.a if new.a_m is None else new.a_m,
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

    new = _trained(upd(st.W, g.W_mxd), upd(st.b, g.b_m), upd(st.a, g.a_m) if outer else None, outer)
    return _advance(st, new, st.opt, f, bad, halt)


def _train_check(slot: Slot, st: State) -> train.Check:
    g, f, bad, halt = _halt_check(slot, st)
    outer = slot.data.train_outer.value
    return train.Check(
        _trained(st.W, st.b, st.a, outer), _trained(g.W_mxd, g.b_m, g.a_m, outer), halt, (f, bad)
    )


def train_step(slot: Slot, st: State, optimizer: optim.Optimizer = optim.GD) -> State:
    """One update of one run by `optimizer` (an optax rule with step size eta, `jaxbof.optim`)
    over the trained parameters, with `gd_step`'s halting rule, through the generic skeleton
    `jaxbof.train.step`; equal to `gd_step` bit for bit for the default plain GD. A halted
    state (and its rule's state) is returned unchanged."""
    return train.step(
        _train_check,
        lambda st, c, new, opt: _advance(st, new, opt, *c.aux, c.halt),
        lambda slot, c: slot.data.eta,
        optimizer,
    )(slot, st)


def resume_slot(slot: Slot) -> Slot:
    """Continue a run halted at a record: next record, not done."""
    st = slot.state
    return slot._replace(state=st._replace(rec=st.rec + 1, done=jnp.zeros_like(st.done)))


def _layers(train_outer: bool):
    return ntk.Layers.BOTH if train_outer else ntk.Layers.FIRST
