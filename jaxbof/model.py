"""Two-layer leaky-ReLU network with fixed outer weights (Karhadkar et al., Section 2).

f(W, x) = sum_j a_j sigma(<w_j, x>),  sigma(z) = max(z, alpha z),  alpha in (0, 1] (alpha = 0 is
ReLU). Only W (M x d) is trained; the outer weights a are fixed. No biases.
"""

from __future__ import annotations

import enum

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
        jnp.arange(width))
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
