"""The two-layer (leaky) ReLU network of both experiments: init and apply, pure functions.

    f(x) = scale * sum_j a_j sigma(<w_j, x> [+ b_j]),   sigma(z) = max(z, alpha z),

alpha in [0, 1] (alpha = 0 is ReLU). One activation (`leaky_relu`, `leaky_relu_slope`) and
two parameterisations, one per experiment:

Scaling (the two conventions, kept apart on purpose since each matches its paper's theorems):

- classification (Karhadkar et al., Section 2; `init_weights`, `apply`, `network_from_preacts`):
  f(W, x) = sum_j a_j sigma(<w_j, x>), a plain sum with no 1/sqrt(M) factor; a_j = +-1 fixed
  (`outer_weights`, alternating or all -1), no bias, only W (M x d) trained; small init
  w_j ~ N(0, s^2 I_d) with s = 1/(M sqrt d) in the published experiments (`init_weights`' scale).
- regression in the NTK regime (Park et al. 2024, arXiv 2410.06191; Du et al. 2019;
  `TwoLayerParams`, `init_two_layer`, `two_layer_apply`, `readout`): f(theta, x) =
  M^{-1/2} sum_j a_j sigma(<w_j, x> + b_j) with w_j ~ N(0, I_d), a_j = +-1 Rademacher, optional
  b_j ~ N(0, 1); antisymmetric init (pairs (w, a, b) and (w, -a, b)) by default, so f_0 = 0.
  Its empirical and analytic NTKs are in `jaxbof.ntk`.

Both inits are padding-exact: neuron j is drawn from fold_in(key, j), so a wider draw holds a
narrower one as a prefix (and a d_pad-column draw the d-column one, zero beyond column d).
"""

from __future__ import annotations

import enum
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Outer(enum.IntEnum):
    """Fixed outer weights a_j."""

    ALTERNATING = 0  # +1, -1, +1, ... (paper)
    ALL_NEGATIVE = 1  # all -1 (the code behind the published figures)


def outer_weights(width: int, outer=Outer.ALTERNATING, dtype=None) -> jax.Array:
    """Outer weights a_M. `outer` may be a traced integer (an Outer value)."""
    alternating = jnp.where(jnp.arange(width) % 2 == 0, 1.0, -1.0)
    a = jnp.where(outer == Outer.ALL_NEGATIVE, -jnp.ones(width), alternating)
    return a if dtype is None else a.astype(dtype)


def leaky_relu(z, alpha):
    """sigma(z) = max(z, alpha z) for alpha <= 1."""
    return jnp.where(z >= 0, z, alpha * z)


def leaky_relu_slope(z, alpha):
    """Subgradient of sigma: 1 for z >= 0 (the paper's choice at 0), alpha for z < 0."""
    return jnp.where(z >= 0, 1.0, alpha).astype(z.dtype)


def init_weights(key, width: int, d, scale, *, d_pad: int) -> jax.Array:
    """W_mxd with i.i.d. N(0, scale^2) entries in the first d columns, zero beyond (d traced).

    Row j is drawn from fold_in(key, j), so a padded draw holds the unpadded one as a prefix.
    The published experiments use scale = 1 / (M sqrt(d)).
    """
    col_mask = jnp.arange(d_pad) < d
    rows = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), (d_pad,)))(
        jnp.arange(width)
    )
    return scale * rows * col_mask


def network_from_preacts(H_nxm, a_m, alpha):
    """Network outputs f_n from pre-activations H_nxm = X W^T."""
    return leaky_relu(H_nxm, alpha) @ a_m


def apply(W_mxd, a_m, alpha, X_nxd):
    """Network outputs f(W, x_i) for the rows of X_nxd."""
    return network_from_preacts(X_nxd @ W_mxd.T, a_m, alpha)


def predict(f):
    """Labels in {-1, +1} with the published convention: f > 0 predicts +1, f = 0 predicts -1."""
    return jnp.where(f > 0, 1.0, -1.0).astype(f.dtype)


# --------------------------------------------------------------------------- regression scaling


class TwoLayerParams(NamedTuple):
    """Regression net parameters: W_mxd (inner), a_m (outer), b_m (bias, or None: no bias)."""

    W_mxd: jax.Array
    a_m: jax.Array
    b_m: jax.Array | None = None


def init_two_layer(
    key,
    width: int,
    d,
    *,
    bias: bool = False,
    antisymmetric: bool = True,
    dtype=None,
    d_pad: int | None = None,
) -> TwoLayerParams:
    """Regression init: w_j ~ N(0, I_d), a_j = +-1 (Rademacher), b_j ~ N(0, 1) if `bias`.

    Padding-exact draws: neuron j's (w_j, a_j, b_j) comes from fold_in(key, j) (each number
    from its own fold_in of that key, see `_draw_neurons`), so nets of width M and M' > M share
    their first drawn neurons (rows j < M/2 under the antisymmetric init, j < M otherwise; the
    standard width-M draw is the base of the antisymmetric width-2M one), W and a are the same
    with and without a bias, and with d_pad > d (then d may be traced) W has d_pad columns,
    the first d bit-identical to the d-column draw and the rest exactly zero.

    antisymmetric (default): draw M/2 neurons j < M/2, then copy them with w_{j+M/2} = w_j,
    b_{j+M/2} = b_j, a_{j+M/2} = -a_j, so f(theta_0, x) = 0 for every x (exactly, see
    `two_layer_apply`); needs an even width (ValueError naming it otherwise).
    """
    if antisymmetric and width % 2 != 0:
        raise ValueError(f"antisymmetric init needs an even width, got width={width}")
    if d_pad is not None and isinstance(d, int) and d > d_pad:  # a traced d is not checked
        raise ValueError(f"d={d} exceeds d_pad={d_pad}")
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    W, a, b = _draw_neurons(
        key,
        d,
        m=width // 2 if antisymmetric else width,
        cols=d if d_pad is None else d_pad,
        dtype=dtype,
    )
    b = b if bias else None
    if antisymmetric:
        W = jnp.concatenate([W, W])
        a = jnp.concatenate([a, -a])
        b = None if b is None else jnp.concatenate([b, b])
    return TwoLayerParams(W, a, b)


# jitted like jax.random's own samplers (compiled once per shape, inlined under an outer jit):
# eager callers, e.g. one init per width in `concentration`, skip op-by-op dispatch
@functools.partial(jax.jit, static_argnames=("m", "cols", "dtype"))
def _draw_neurons(key, d, *, m: int, cols: int, dtype):
    """(W_mxcols, a_m, b_m) for neurons j < m, columns >= d zero.

    Neuron j has standard normals z_js from fold_in(fold_in(key, j), s), one per slot s:
    a_j = sign(z_j0) (Rademacher), b_j = z_j1, w_jc = z_j(2+c). The slots of a and b come first,
    so neither the bias option nor the column count moves any other number. One normal sampler
    under one flat vmap over the (neuron, slot) pairs: nested vmaps compile several times slower.
    """
    slots = cols + 2
    j, s = jnp.arange(m * slots) // slots, jnp.arange(m * slots) % slots
    z = jax.vmap(
        lambda j_, s_: jax.random.normal(
            jax.random.fold_in(jax.random.fold_in(key, j_), s_), (), dtype
        )
    )(j, s).reshape(m, slots)
    W = jnp.where(jnp.arange(cols) < d, z[:, 2:], jnp.zeros((), dtype))
    return W, jnp.where(z[:, 0] >= 0, 1.0, -1.0).astype(dtype), z[:, 1]


def two_layer_preacts(params: TwoLayerParams, x):
    """Pre-activations <w_j, x> [+ b_j]: x_d -> h_m, x_nxd -> H_nxm."""
    h = x @ params.W_mxd.T
    return h if params.b_m is None else h + params.b_m


def readout(t, axis: int = -1):
    """M^{-1/2} sum_j t_j over the neuron axis `axis` (length M) of the terms t_j = a_j
    sigma(h_j). For even M the sum is taken as sum_{j < M/2} (t_j + t_{j+M/2}), which is the
    same function but makes f exactly 0 at an antisymmetric init (each pair cancels bit for
    bit). The one output reduction of the regression net, whatever the layout of t."""
    M = t.shape[axis]
    if M % 2 == 0:
        t = jax.lax.slice_in_dim(t, 0, M // 2, axis=axis) + jax.lax.slice_in_dim(
            t, M // 2, M, axis=axis
        )
    return jnp.sum(t, axis=axis) / math.sqrt(M)


def two_layer_apply(params: TwoLayerParams, x, *, alpha=0.0):
    """f(theta, x) = M^{-1/2} sum_j a_j sigma(<w_j, x> + b_j); x_d -> scalar, x_nxd -> f_n
    (`readout` of the terms, pair by pair)."""
    return readout(leaky_relu(two_layer_preacts(params, x), alpha) * params.a_m, axis=-1)
