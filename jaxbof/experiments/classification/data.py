"""Data model of Karhadkar et al. (NeurIPS 2024), Definition 2.1.

x_i = sqrt(gamma) y_i v + sqrt(1 - gamma) z_i,   z_i ~ N(0, (I_d - v v^T) / d),
true labels y_i uniform on {-1, +1}; the observed label is flipped on a corrupt set B while the
input keeps its true signal sign.

All samplers are pure functions of an explicit key and handle ONE data set; callers batch with
vmap. Randomness is drawn per sample (key = fold_in(key, i)) and per row of length ``d_pad``, and
JAX's partitionable threefry makes a row of length d a prefix of the same row of length
d_pad > d. Hence a data set padded to (n_pad, d_pad) holds, in its first n rows and d columns,
exactly the unpadded data set: padding never changes a grid cell. The reductions ||g|| and
<w, v> (Signal.RANDOM) go through numerics.dot, whose fixed-shape tiles make them bitwise
independent of the padded length as well.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbof.numerics import dot, matmul_t


class Corruption(enum.IntEnum):
    """How observed labels are corrupted."""

    BERNOULLI = 0  # each label flipped independently with probability `noise_rate` (published code)
    EXACT = 1  # exactly k = round(noise_rate * n) labels flipped, a uniformly random set (paper)


class Signal(enum.IntEnum):
    """How the unit signal vector v is chosen (equal in distribution by rotation invariance)."""

    E1 = 0  # v = e_1
    RANDOM = 1  # v uniform on the sphere S^{d-1}, drawn per data set


class TrainData(NamedTuple):
    """One training set, padded to (n_pad, d_pad); padded rows/columns are exactly zero."""

    X_nxd: jax.Array  # inputs
    y_true_n: jax.Array  # clean labels in {-1, +1}
    y_obs_n: jax.Array  # observed (possibly flipped) labels in {-1, +1}
    corrupt_n: jax.Array  # bool, True on the corrupt set B
    mask_n: jax.Array  # bool, True on real samples
    v_d: jax.Array  # unit signal vector


def known(signal) -> Signal | None:
    """The Signal when it is known at trace time (a Python value or a concrete array); None when
    it is traced or not given: then the samplers cannot specialise to it."""
    if signal is None or isinstance(signal, jax.core.Tracer):
        return None
    return Signal(int(signal))


def along(A_rxd, v_d, signal) -> jax.Array:
    """<a_r, v> for each row a_r of A (padding-invariant, numerics.matmul_t). For a signal known
    to be e_1 it is the first column, the same bits that the product gives (each row's sum has
    one nonzero term) without the product's 64-row tile of zeros."""
    if known(signal) == Signal.E1:
        return A_rxd[:, 0]
    return matmul_t(A_rxd, v_d[None, :])[:, 0]


def signal_vector(key, d, *, d_pad: int, signal) -> jax.Array:
    """Unit signal vector v of dimension d, zero-padded to d_pad.

    `signal` is a Signal (traceable)."""
    col_mask = jnp.arange(d_pad) < d
    g = jax.random.normal(key, (d_pad,)) * col_mask
    e1 = (jnp.arange(d_pad) == 0).astype(g.dtype)
    rand = g / jnp.sqrt(dot(g, g))
    return jnp.where(signal == Signal.E1, e1, rand)


def _sample_rows(key, idx, d, v_d, d_pad: int, signal=None):
    """Per sample i (key fold_in(key, i)): a label y_i, a uniform u_i and the noise row z_i.

    One Gaussian vector g of length 2 + d_pad per sample: y_i = sign(g_0), u_i = Phi(g_1) and
    z_i = (P_v g_{2:}) / sqrt(d) with P_v the projector orthogonal to v, exactly zero beyond d.
    """
    col_mask = jnp.arange(d_pad) < d

    def one(i):
        g = jax.random.normal(jax.random.fold_in(key, i), (2 + d_pad,))
        y = jnp.where(g[0] >= 0, 1.0, -1.0).astype(g.dtype)
        return y, jax.scipy.special.ndtr(g[1]), g[2:] * col_mask

    y, u, W = jax.vmap(one)(idx)
    proj = along(W, v_d, signal)  # padding-invariant <w_i, v>
    return y, u, (W - proj[:, None] * v_d[None, :]) / jnp.sqrt(d).astype(W.dtype)


def sample_train(
    key,
    n,
    d,
    gamma,
    noise_rate,
    *,
    n_pad: int,
    d_pad: int,
    corruption=Corruption.BERNOULLI,
    signal=Signal.E1,
) -> TrainData:
    """Training set of Definition 2.1: n samples in dimension d (traced), padded to (n_pad, d_pad).

    corruption=EXACT flips exactly k = round(noise_rate * n) labels, the k samples with the
    smallest u_i (a uniformly random k-set); BERNOULLI flips sample i when u_i < noise_rate.
    Both `corruption` and `signal` may be traced integers; a `signal` known when tracing
    (a Python Signal) skips the product with e_1 and gives the same bits.
    """
    v_key, x_key = jax.random.split(key)
    v_d = signal_vector(v_key, d, d_pad=d_pad, signal=signal)
    idx = jnp.arange(n_pad)
    mask_n = idx < n
    y_true, u, Z = _sample_rows(x_key, idx, d, v_d, d_pad, signal)
    X = jnp.sqrt(gamma) * y_true[:, None] * v_d[None, :] + jnp.sqrt(1.0 - gamma) * Z
    X = X * mask_n[:, None]

    u = jnp.where(mask_n, u, jnp.inf)
    k = jnp.floor(noise_rate * n + 0.5)
    # rank of u_i among the real samples; ties (possible in float32) broken by index, so that
    # exactly k samples have rank < k
    before = (u[None, :] < u[:, None]) | (
        (u[None, :] == u[:, None]) & (idx[None, :] < idx[:, None])
    )
    rank = jnp.sum(before, axis=1)
    corrupt = jnp.where(corruption == Corruption.EXACT, rank < k, u < noise_rate) & mask_n
    y_obs = jnp.where(corrupt, -y_true, y_true)
    return TrainData(X, y_true, y_obs, corrupt, mask_n, v_d)


def sample_test(key, num: int, d, gamma, v_d, *, d_pad: int):
    """`num` fresh test points with CLEAN labels: (X_txd, y_t). Direct sampler in R^d."""
    y, _, Z = _sample_rows(key, jnp.arange(num), d, v_d, d_pad)
    X = jnp.sqrt(gamma) * y[:, None] * v_d[None, :] + jnp.sqrt(1.0 - gamma) * Z
    return X, y
