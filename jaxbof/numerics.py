"""Padding-invariant products: the same bits whatever zero padding a grid cell was given."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TILE_ROWS, TILE_COLS = 64, 128


def matmul_t(A_rxd, B_sxd):
    """A B^T built from products of fixed-shape tiles (64 x 128 by 128 x 64), accumulated over
    the 128-column blocks in a fixed order.

    A plain dot's summation order depends on its shape, so zero padding changes its rounding.
    Here every tile product has the same shape and padding only adds exact zeros: the result is
    bitwise the same for every padded shape, so a grid cell's data products (hence its whole
    trajectory) do not depend on how the sweep padded it.
    """

    def tiles(M):
        r, d = M.shape
        M = jnp.pad(M, ((0, (-r) % TILE_ROWS), (0, (-d) % TILE_COLS)))
        return M.reshape(M.shape[0] // TILE_ROWS, TILE_ROWS, -1, TILE_COLS)

    A, B = tiles(A_rxd), tiles(B_sxd)

    def body(k, acc):  # acc[i, j] += A[i, :, k] @ B[j, :, k]^T for every tile pair (i, j)
        return acc + jnp.einsum("iac,jbc->ijab", A[:, :, k], B[:, :, k])

    init = jnp.zeros((A.shape[0], B.shape[0], TILE_ROWS, TILE_ROWS), jnp.result_type(A, B))
    out = jax.lax.fori_loop(0, A.shape[2], body, init)
    out = out.transpose(0, 2, 1, 3).reshape(A.shape[0] * TILE_ROWS, B.shape[0] * TILE_ROWS)
    return out[: A_rxd.shape[0], : B_sxd.shape[0]]


def dot(a_d, b_d):
    """<a, b> via matmul_t: bitwise the same for every zero padding of a and b."""
    return matmul_t(a_d[None, :], b_d[None, :])[0, 0]


def float32_bits(x: float) -> int:
    """The bits of float32(x) as an int: how a float grid coordinate is folded into a key."""
    return int(np.float32(x).view(np.uint32))
