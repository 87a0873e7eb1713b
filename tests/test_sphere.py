"""Sphere points, Gegenbauer polynomials and zonal harmonics: invariants and independent references
(the NumPy recurrence of `spectra`, Monte Carlo on the sphere, Gauss-Jacobi quadrature in t)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxbof import spectra, sphere

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------- points


def test_uniform_unit_norm_and_prefix_under_padding():
    X = sphere.uniform(KEY, 50, 7)
    assert X.shape == (50, 7) and X.dtype == jnp.float64
    np.testing.assert_allclose(np.linalg.norm(np.asarray(X), axis=1), 1.0, rtol=0, atol=4e-16)
    # eager: a draw of n points is a prefix of a padded draw, bit for bit, and padding is zero
    Xp = sphere.uniform(KEY, 50, 7, n_pad=64)
    assert Xp.shape == (64, 7) and np.array_equal(Xp[:50], X)
    assert np.all(np.asarray(Xp[50:]) == 0.0)
    # jitted, with a traced n: the same prefix property for every n and padding
    f = jax.jit(lambda n: sphere.uniform(KEY, n, 7, n_pad=64))
    g = jax.jit(lambda n: sphere.uniform(KEY, n, 7, n_pad=96))
    X20, X50 = f(20), f(50)
    assert np.array_equal(X20[:20], X50[:20]) and np.array_equal(g(50)[:50], X50[:50])
    assert np.all(np.asarray(X20[20:]) == 0.0) and np.all(np.asarray(X50[50:]) == 0.0)
    # jit and eager agree to rounding (XLA may fuse the normalisation differently)
    np.testing.assert_allclose(X50[:50], X, rtol=0, atol=4e-16)
    # dtype is honoured (traced only), and the same key gives the same points
    assert jax.eval_shape(lambda: sphere.uniform(KEY, 4, 3, dtype=jnp.float32)).dtype == jnp.float32
    assert np.array_equal(sphere.uniform(jax.random.key(0), 50, 7), X)


def test_uniform_moments():
    """E[x] = 0, E[x x^T] = I/d for the uniform measure (4 Monte Carlo standard errors)."""
    n, d = 20_000, 4
    X = np.asarray(sphere.uniform(jax.random.key(1), n, d))
    assert np.all(np.abs(X.mean(0)) < 4 * X.std(0) / np.sqrt(n))
    S = np.einsum("ni,nj->nij", X, X)
    assert np.all(np.abs(S.mean(0) - np.eye(d) / d) < 4 * S.std(0) / np.sqrt(n) + 1e-15)


def test_directions_per_degree_keys():
    xi = sphere.directions(KEY, (1, 2, 4), 5)
    assert xi.shape == (3, 5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(xi), axis=1), 1.0, rtol=0, atol=4e-16)
    # adding or dropping a degree leaves the others' directions alone; degree k is point k
    assert np.array_equal(sphere.directions(KEY, (2, 4, 7), 5)[:2], xi[1:])
    assert np.array_equal(sphere.directions(KEY, (0, 1, 2, 3, 4), 5)[jnp.array([1, 2, 4])], xi)
    assert np.array_equal(sphere.uniform(KEY, 5, 5)[jnp.array([1, 2, 4])], xi)
    assert sphere.directions(KEY, (), 5).shape == (0, 5)


# ----------------------------------------------------------------------------- Gegenbauer


@pytest.mark.parametrize("d", [2, 3, 5, 10])
def test_gegenbauer_matches_numpy_recurrence(d):
    t = np.concatenate([np.linspace(-1.0, 1.0, 101), [0.3337, -0.999999]]).reshape(-1, 1)
    P = sphere.gegenbauer(d, 25, jnp.asarray(t))
    assert P.shape == (26,) + t.shape
    # the same three-term recurrence in two implementations: they may round differently (XLA
    # contracts to FMAs in some versions, e.g. jax 0.7.0: 1.2e-14 at k = 25), up to about
    # 4 eps per degree
    np.testing.assert_allclose(
        np.asarray(P), spectra.gegenbauer(d, 25, t), rtol=0, atol=26 * 4 * np.finfo(np.float64).eps
    )
    assert np.all(np.asarray(sphere.gegenbauer(d, 25, 1.0)) == 1.0)  # P_k(1) = 1 exactly
    # and under jit
    np.testing.assert_allclose(
        np.asarray(jax.jit(sphere.gegenbauer, static_argnums=(0, 1))(d, 25, jnp.asarray(t))),
        np.asarray(P),
        rtol=0,
        atol=1e-15,
    )


def test_gegenbauer_special_cases():
    t = np.linspace(-1.0, 1.0, 41)
    # d = 2: Chebyshev T_k(cos th) = cos(k th); d = 3: Legendre
    th = np.arccos(t)
    np.testing.assert_allclose(
        sphere.gegenbauer(2, 9, t), np.cos(np.arange(10)[:, None] * th), atol=1e-13
    )
    np.testing.assert_allclose(
        sphere.gegenbauer(3, 9, t), [special.eval_legendre(k, t) for k in range(10)], atol=1e-13
    )
    assert sphere.gegenbauer(5, 0, t).shape == (1, 41)
    np.testing.assert_array_equal(sphere.gegenbauer(5, 1, t), np.stack([np.ones(41), t]))
    with pytest.raises(ValueError, match="d=1"):
        sphere.gegenbauer(1, 3, t)


# ----------------------------------------------------------------------------- zonal harmonics

DEGREES = (0, 1, 2, 3, 4)


def _mc_gram(Y):
    """Mean of Y_i Y_j over the points and its Monte Carlo standard error."""
    prod = Y[:, :, None] * Y[:, None, :]
    return prod.mean(0), prod.std(0) / np.sqrt(Y.shape[0])


@pytest.mark.parametrize("d", [3, 5])
def test_zonal_orthonormal_by_monte_carlo(d):
    n = 200_000
    kx, kxi = jax.random.split(jax.random.key(d))
    X = sphere.uniform(kx, n, d)
    xi = sphere.directions(kxi, DEGREES, d)
    Y = np.asarray(sphere.zonal_features(X, xi, DEGREES))
    assert Y.shape == (n, len(DEGREES))
    G, se = _mc_gram(Y)
    assert np.all(np.abs(G - np.eye(len(DEGREES))) < 4 * se + 1e-12), (G, se)
    # the single-degree form gives the same columns
    for j, k in enumerate(DEGREES):
        np.testing.assert_allclose(
            np.asarray(sphere.zonal(X[:1000], xi[j], k)), Y[:1000, j], rtol=1e-14, atol=1e-14
        )


@pytest.mark.parametrize("d", [2, 3, 5, 10])
def test_zonal_orthonormal_by_gauss_jacobi_quadrature(d):
    """<Y_j, Y_k> = c_d int_{-1}^{1} Y_j Y_k (1 - t^2)^((d-3)/2) dt for zonal functions about one
    xi; Gauss-Jacobi with 12 nodes is exact for polynomials of degree <= 23 (here <= 16)."""
    t, w = special.roots_jacobi(12, (d - 3) / 2, (d - 3) / 2)
    w = w / w.sum()  # c_d: the probability measure
    # points on the sphere with <x, xi> = t, xi = e_1 (the rest of x along e_2)
    X = np.zeros((t.size, d))
    X[:, 0], X[:, 1] = t, np.sqrt(1.0 - t * t)
    xi = np.zeros(d)
    xi[0] = 1.0
    degrees = tuple(range(9))
    Y = np.asarray(sphere.zonal_features(jnp.asarray(X), jnp.tile(xi, (9, 1)), degrees))
    np.testing.assert_allclose((Y * w[:, None]).T @ Y, np.eye(9), rtol=0, atol=1e-12)


@pytest.mark.parametrize("d", [3, 5])
def test_addition_theorem_by_monte_carlo(d):
    """E_x[Y_k(x; xi) Y_k(x; xi')] = P_k(<xi, xi'>) for two directions of the same degree."""
    n = 200_000
    kx, kxi = jax.random.split(jax.random.key(10 + d))
    X = sphere.uniform(kx, n, d)
    xi2 = sphere.uniform(kxi, 2, d)
    u = float(xi2[0] @ xi2[1])
    for k in (1, 2, 3, 4):
        Y = np.asarray(sphere.zonal_features(X, xi2, (k, k)))
        prod = Y[:, 0] * Y[:, 1]
        expected = float(sphere.gegenbauer(d, k, u)[k])
        assert abs(prod.mean() - expected) < 4 * prod.std() / np.sqrt(n), (k, u, prod.mean())


def test_zonal_with_padding_columns_and_shapes():
    d, d_pad = 4, 9
    X = sphere.uniform(jax.random.key(3), 30, d)
    xi = sphere.directions(jax.random.key(4), (2, 3), d)
    pad = lambda A: jnp.pad(A, [(0, 0)] * (A.ndim - 1) + [(0, d_pad - d)])
    Y = sphere.zonal_features(X, xi, (2, 3))
    np.testing.assert_allclose(
        sphere.zonal_features(pad(X), pad(xi), (2, 3), d), Y, rtol=1e-14, atol=1e-14
    )
    np.testing.assert_allclose(
        sphere.zonal(pad(X), pad(xi[1]), 3, d), Y[:, 1], rtol=1e-14, atol=1e-14
    )
    assert sphere.zonal(X[0], xi[0], 2).shape == ()
    assert sphere.zonal_features(X, xi[:0], ()).shape == (30, 0)
    with pytest.raises(ValueError, match="2 rows for 3 degrees"):
        sphere.zonal_features(X, xi, (1, 2, 3))
