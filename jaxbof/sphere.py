"""Points, Gegenbauer polynomials and zonal harmonics on the unit sphere S^{d-1} (JAX).

The one place the package samples the sphere and builds spherical-harmonic targets; the
eigenvalues of kernels on the sphere live in `jaxbof.spectra` (host-side NumPy), whose
multiplicity N(d, k) is reused here.

Conventions (uniform probability measure sigma on S^{d-1}):
- P_k is the Gegenbauer polynomial of order (d-2)/2 normalised to P_k(1) = 1 (Legendre for d = 3,
  Chebyshev T_k for d = 2); for t = <x, xi> it is the zonal function of degree k about xi.
- Addition theorem: for an orthonormal basis Y_{k,1..N(d,k)} of the degree-k harmonics,
  sum_i Y_{k,i}(x) Y_{k,i}(x') = N(d, k) P_k(<x, x'>). Hence the zonal harmonic
  Y_k(x; xi) = sqrt(N(d, k)) P_k(<x, xi>) has unit L2(sigma) norm, and
  E_x[Y_k(x; xi) Y_k(x; xi')] = P_k(<xi, xi'>); harmonics of different degrees are orthogonal.
- Funk-Hecke: a dot-product kernel k(<x, x'>) maps Y_k(.; xi) to mu_k Y_k(.; xi) (`spectra`).

Randomness is per point: point i from fold_in(key, i), direction of degree k from
fold_in(key, k), so a larger draw holds a smaller one as a prefix and adding a degree never
changes another degree's direction. No function here enables x64; the float dtype is
jnp.result_type(float) unless one is passed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import spectra

__all__ = ["directions", "gegenbauer", "uniform", "zonal", "zonal_features"]

# inner products <x, xi> at full precision (no reduced-precision matmul passes on accelerators)
_HIGHEST = jax.lax.Precision.HIGHEST


def _float_dtype(dtype):
    return jnp.result_type(float) if dtype is None else dtype


def _point(key, d: int, dtype) -> jax.Array:
    """One point uniform on S^{d-1}: a N(0, I_d) draw divided by its norm (a plain sum over the
    d coordinates: rounding independent of how many points are drawn alongside)."""
    g = jax.random.normal(key, (d,), dtype)
    return g / jnp.sqrt(jnp.sum(g * g))


def uniform(key, n, d: int, *, n_pad: int | None = None, dtype=None) -> jax.Array:
    """X_nxd: n points uniform on S^{d-1} (normalised Gaussians), point i from fold_in(key, i).

    Padding-exact: with n_pad given the result has n_pad rows, rows i < n bit-identical to an
    unpadded draw of n points (or of any other n_pad) and rows i >= n exactly zero; then n may be
    traced. Without n_pad, n must be a Python int. d is static.
    """
    dtype = jnp.dtype(_float_dtype(dtype))
    X = _points(key, jnp.arange(n if n_pad is None else n_pad, dtype=jnp.int32), d=d, dtype=dtype)
    if n_pad is None:
        return X
    return jnp.where((jnp.arange(n_pad) < n)[:, None], X, jnp.zeros((), dtype))


# jitted like jax.random's own samplers (compiled once per shape, inlined under an outer jit)
@functools.partial(jax.jit, static_argnames=("d", "dtype"))
def _points(key, index_k, *, d: int, dtype) -> jax.Array:
    """X_kxd: row r is the point drawn from fold_in(key, index_k[r])."""
    return jax.vmap(lambda i: _point(jax.random.fold_in(key, i), d, dtype))(index_k)


def directions(key, degrees, d: int, *, dtype=None) -> jax.Array:
    """xi_kxd: one direction uniform on S^{d-1} per entry of `degrees` (Python ints), the one
    of degree k drawn from fold_in(key, k) exactly like point k of `uniform(key, ., d)`: adding or
    removing a degree never changes another's direction (a repeated degree repeats its direction).
    Use a key of its own: directions and points drawn from one key coincide.
    """
    degrees = jnp.asarray([int(k) for k in degrees], jnp.int32).reshape(-1)
    return _points(key, degrees, d=d, dtype=jnp.dtype(_float_dtype(dtype)))


def gegenbauer(d: int, k_max: int, t) -> jax.Array:
    """P_0(t), ..., P_{k_max}(t): Gegenbauer polynomials of order (d-2)/2 with P_k(1) = 1.

    Shape (k_max + 1,) + t.shape, dtype of t (a float). Stable forward three-term recurrence
    P_0 = 1, P_1 = t, P_{k+1} = ((2k + d - 2) t P_k - k P_{k-1}) / (k + d - 2), d >= 2 (d = 2:
    Chebyshev T_k, d = 3: Legendre). |P_k| <= 1 on [-1, 1], so nothing overflows. The JAX
    counterpart of `spectra.gegenbauer` (NumPy, float64): the same recurrence, equal to rounding;
    a lax.scan over k, so a large k_max stays one small compiled loop.
    """
    if d < 2:
        raise ValueError(f"gegenbauer needs d >= 2, got d={d}")
    if k_max < 0:
        raise ValueError(f"gegenbauer needs k_max >= 0, got k_max={k_max}")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    P0 = jnp.ones_like(t)
    if k_max == 0:
        return P0[None]
    if k_max == 1:
        return jnp.stack([P0, t])
    k = np.arange(1, k_max, dtype=np.float64)
    coeffs = jnp.asarray(np.stack([2 * k + d - 2, k, k + d - 2], axis=1), t.dtype)

    def step(carry, c):
        P_prev, P = carry
        P_next = (c[0] * t * P - c[1] * P_prev) / c[2]
        return (P, P_next), P_next

    _, rest = jax.lax.scan(step, (P0, t), coeffs)
    return jnp.concatenate([P0[None], t[None], rest])


def _sqrt_multiplicity(d: int, degrees) -> np.ndarray:
    return np.sqrt(spectra.multiplicity(d, np.asarray(degrees, np.int64)))


def zonal(X_nxd, xi_d, k: int, d: int | None = None) -> jax.Array:
    """Y_n: the unit-norm zonal harmonic Y_k(x; xi) = sqrt(N(d, k)) P_k(<x, xi>) at the rows x
    of X_nxd (any leading shape; a single x_d gives a scalar).

    k is a Python int; d is the sphere's dimension, X.shape[-1] unless given (pass it when X and
    xi carry zero padding columns). E_x[Y_k(x; xi)^2] = 1 under the uniform measure (addition
    theorem), and Y_k is orthogonal to every harmonic of another degree. Funk-Hecke: for a
    dot-product kernel, E_x'[kernel(<x, x'>) Y_k(x'; xi)] = mu_k Y_k(x; xi), mu_k from `spectra`.
    N(d, k) comes from `spectra.multiplicity` (inf where it overflows, d and k both large).
    """
    d = X_nxd.shape[-1] if d is None else d
    t = jnp.matmul(X_nxd, xi_d, precision=_HIGHEST)
    return float(_sqrt_multiplicity(d, k)) * gegenbauer(d, k, t)[k]


def zonal_features(X_nxd, xi_kxd, degrees: tuple[int, ...], d: int | None = None) -> jax.Array:
    """Y_nxK with column j = zonal(X, xi_kxd[j], degrees[j], d): one zonal harmonic per
    (degree, direction) pair, e.g. a target f* = Y_nxK @ c_K with ||f*||^2 = sum_k c_k^2 when
    the degrees are distinct.

    Each column has unit L2 norm under the uniform measure; columns of different degrees are
    orthogonal; two columns of the same degree k have inner product P_k(<xi, xi'>) (addition
    theorem). `degrees` are Python ints (static); xi_kxd has one row per degree.
    """
    degrees = tuple(int(k) for k in degrees)
    if xi_kxd.shape[0] != len(degrees):
        raise ValueError(f"xi_kxd has {xi_kxd.shape[0]} rows for {len(degrees)} degrees")
    d = X_nxd.shape[-1] if d is None else d
    if not degrees:
        return jnp.zeros(X_nxd.shape[:-1] + (0,), jnp.result_type(X_nxd, float))
    t_nxK = jnp.matmul(X_nxd, xi_kxd.T, precision=_HIGHEST)
    P = gegenbauer(d, max(degrees), t_nxK)  # (k_max + 1, ..., K)
    cols = jnp.arange(len(degrees))
    Y = jnp.moveaxis(P, 0, -1)[..., cols, jnp.asarray(degrees)]  # (..., K)
    return Y * jnp.asarray(_sqrt_multiplicity(d, degrees), Y.dtype)
