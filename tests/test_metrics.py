"""Metrics: max-margin classifier, closed-form and Monte Carlo test errors, moments, stats."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from jaxbof import model
from jaxbof.experiments.classification import data, metrics
from jaxbof.experiments.classification.data import Signal

sample_test = jax.jit(data.sample_test, static_argnames=("num", "d_pad"))
mc_error = jax.jit(metrics.test_error_mc, static_argnames=("num",))


def unit_v(d, seed=0):
    return data.signal_vector(jax.random.PRNGKey(seed), d, d_pad=d, signal=Signal.RANDOM)


# ----------------------------------------------------------------------------- max margin


def slsqp_max_margin(X, y):
    """Independent primal solver: min ||w||^2 s.t. y_i <w, x_i> >= 1."""
    A = y[:, None] * X
    w0 = 2.0 * np.linalg.lstsq(A, np.ones(len(y)), rcond=None)[0]  # feasible: all margins = 2
    res = scipy.optimize.minimize(
        lambda w: w @ w,
        w0,
        jac=lambda w: 2 * w,
        method="SLSQP",
        constraints=[dict(type="ineq", fun=lambda w: A @ w - 1.0, jac=lambda w: A)],
        options=dict(ftol=1e-12, maxiter=1000),
    )
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_margin_against_slsqp_and_kkt(seed):
    rng = np.random.default_rng(seed)
    n, d = 15, 25
    X = rng.normal(size=(n, d)) / np.sqrt(d) + 0.3 * rng.normal(size=d)  # correlated inputs
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    mm = metrics.max_margin(X @ X.T, y)
    assert mm.ok
    alpha = mm.alpha
    w = X.T @ (y * alpha)
    margins = y * (X @ w)
    assert np.all(margins >= 1 - 1e-8)
    assert abs(mm.min_margin - margins.min()) < 1e-10
    assert np.all(alpha >= 0)
    assert np.max(np.abs(alpha * (margins - 1))) < 1e-8  # complementary slackness
    assert 0 < np.sum(alpha > 1e-10) < n  # some constraints active, some not
    np.testing.assert_allclose(mm.norm, np.linalg.norm(w), rtol=1e-10)

    w_ref = slsqp_max_margin(X, y)
    assert np.all(y * (X @ w_ref) >= 1 - 1e-8)
    np.testing.assert_allclose(mm.norm, np.linalg.norm(w_ref), rtol=1e-5)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-4 * np.linalg.norm(w_ref))


def test_max_margin_not_separable():
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([1.0, -1.0, 1.0])  # the same input with both labels
    mm = metrics.max_margin(X @ X.T, y)
    assert not mm.ok and math.isnan(mm.norm)
    assert math.isnan(metrics.max_margin_linear_error(mm, y, X[:, 0], 0.3, 2))


def test_max_margin_linear_error_matches_explicit_classifier():
    n, d, gamma = 20, 60, 0.2
    rng = np.random.default_rng(3)
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    y_true = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    Z = rng.normal(size=(n, d)) / np.sqrt(d)
    Z -= np.outer(Z @ v, v)
    X = np.sqrt(gamma) * y_true[:, None] * v + np.sqrt(1 - gamma) * Z
    y = y_true.copy()
    y[:3] *= -1  # three corrupt labels
    mm = metrics.max_margin(X @ X.T, y)
    assert mm.ok
    w = X.T @ (y * mm.alpha)
    a_v = w @ v
    z = w - a_v * v
    ref = scipy.stats.norm.cdf(-math.sqrt(gamma * d / (1 - gamma)) * a_v / np.linalg.norm(z))
    err = metrics.max_margin_linear_error(mm, y, X @ v, gamma, d)
    assert 1e-6 < err < 0.5
    np.testing.assert_allclose(err, ref, rtol=1e-8)


# ----------------------------------------------------------------------------- closed form / MC


def test_linear_test_error_closed_form_vs_monte_carlo():
    d, gamma, num = 5, 0.1, 200_000
    v = unit_v(d, 1)
    z = jax.random.normal(jax.random.PRNGKey(2), (d,))
    z = z - (z @ v) * v
    X, y = sample_test(jax.random.PRNGKey(3), num, d, gamma, v, d_pad=d)
    for a_v, z_norm in [(1.0, 0.93), (0.4, 1.0), (-0.5, 2.0)]:
        w = a_v * v + z_norm * z / jnp.linalg.norm(z)
        mc = float(jnp.mean(model.predict(X @ w) != y))
        p = metrics.linear_test_error(a_v, z_norm, gamma, d)
        assert 0.05 < p < 0.95
        assert abs(mc - p) < 4 * math.sqrt(p * (1 - p) / num), (a_v, z_norm, mc, p)
    assert metrics.linear_test_error(1.0, 0.0, gamma, d) == 0.0
    assert metrics.linear_test_error(-1.0, 0.0, gamma, d) == 1.0
    # tiny errors are kept in float64: t = sqrt(gamma d / (1 - gamma)) a_v / ||z|| = 30
    tiny = metrics.linear_test_error(1.0, 4.0 / 30.0, 0.5, 16)
    np.testing.assert_allclose(tiny, scipy.stats.norm.cdf(-30.0), rtol=1e-10)
    assert 1e-200 < tiny < 1e-190


def _network(width=8, d=30, seed=0, signal=0.6):
    v = unit_v(d, seed)
    a = model.outer_weights(width, dtype=jnp.float64)
    W = jax.random.normal(jax.random.PRNGKey(seed + 10), (width, d)) / math.sqrt(d)
    W = W + signal * a[:, None] * v[None, :]  # neurons point towards their output sign
    return W, a, v


def test_test_error_mc_matches_direct_monte_carlo():
    width, d, gamma, alpha, num = 8, 30, 0.2, 0.1, 100_000
    W, a, v = _network(width, d, signal=0.1)
    WWt, Wv = metrics.direct_moments(W, v)
    reduced = float(mc_error(jax.random.PRNGKey(5), WWt, Wv, a, alpha, gamma, d, num))
    X, y = sample_test(jax.random.PRNGKey(6), num, d, gamma, v, d_pad=d)
    direct = float(jnp.mean(model.predict(model.apply(W, a, alpha, X)) != y))
    p = 0.5 * (reduced + direct)
    assert 0.03 < p < 0.45
    assert abs(reduced - direct) < 4 * math.sqrt(2 * p * (1 - p) / num)


def test_test_error_mc_linear_network_matches_closed_form():
    """alpha = 1 makes the network linear: f(x) = <a^T W, x>, whose error has a closed form."""
    width, d, gamma, num = 8, 30, 0.2, 100_000
    W, a, v = _network(width, d, seed=1, signal=0.15)
    WWt, Wv = metrics.direct_moments(W, v)
    err = float(mc_error(jax.random.PRNGKey(7), WWt, Wv, a, 1.0, gamma, d, num))
    w = np.asarray(a @ W)
    a_v = w @ np.asarray(v)
    p = metrics.linear_test_error(a_v, np.linalg.norm(w - a_v * np.asarray(v)), gamma, d)
    assert 0.03 < p < 0.45
    assert abs(err - p) < 4 * math.sqrt(p * (1 - p) / num)


# ----------------------------------------------------------------------------- moments, stats


def test_gram_moments_equal_direct_moments():
    rng = np.random.default_rng(4)
    m, n, d = 6, 9, 23
    X, W0, C = rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng.normal(size=(m, n))
    v = np.asarray(unit_v(d, 2))
    W = W0 + C @ X
    WWt_ref, Wv_ref = metrics.direct_moments(W, v)
    np.testing.assert_allclose(WWt_ref, W @ W.T, rtol=1e-13)
    WWt, Wv = metrics.gram_moments(C, X @ X.T, X @ W0.T, W0 @ W0.T, W0 @ v, X @ v)
    np.testing.assert_allclose(WWt, WWt_ref, rtol=1e-12, atol=1e-12 * np.abs(WWt_ref).max())
    np.testing.assert_allclose(Wv, Wv_ref, rtol=1e-12, atol=1e-12 * np.abs(Wv_ref).max())
    assert np.array_equal(WWt, WWt.T)


@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_weight_stats(alpha):
    W, a, v = _network(8, 30, seed=3, signal=0.3)
    W = W.at[0].multiply(-1.0)  # one neuron against its output sign: A_1 != A_-1
    s = metrics.weight_stats(*metrics.direct_moments(W, v), a, alpha)
    A1 = model.apply(W, a, alpha, v[None])[0]
    Am1 = -model.apply(W, a, alpha, -v[None])[0]
    np.testing.assert_allclose(s.A_1, A1, rtol=1e-12)
    np.testing.assert_allclose(s.A_m1, Am1, rtol=1e-12)
    np.testing.assert_allclose(s.A_min, min(A1, Am1), rtol=1e-12)
    if alpha < 1:
        assert abs(A1 - Am1) > 1e-3
    Wn, vn, an = map(np.asarray, (W, v, a))
    Z = Wn - np.outer(Wn @ vn, vn)
    np.testing.assert_allclose(s.w_norm, np.linalg.norm(Wn), rtol=1e-12)
    np.testing.assert_allclose(
        s.z_norm**2, np.linalg.norm(Wn) ** 2 - np.linalg.norm(Wn @ vn) ** 2, rtol=1e-12
    )
    np.testing.assert_allclose(s.z_norm, np.linalg.norm(Z), rtol=1e-12)
    np.testing.assert_allclose(s.snr, min(A1, Am1) / np.linalg.norm(Z), rtol=1e-12)
    np.testing.assert_allclose(s.A_lin, an @ Wn @ vn, rtol=1e-12)
    np.testing.assert_allclose(s.zlin_norm, np.linalg.norm(an @ Z), rtol=1e-11)
    np.testing.assert_allclose(s.snr_lin, (an @ Wn @ vn) / np.linalg.norm(an @ Z), rtol=1e-11)
    if alpha == 1.0:  # a linear network: A_1 = A_-1 = A_lin
        np.testing.assert_allclose([s.A_1, s.A_m1], [s.A_lin, s.A_lin], rtol=1e-12)


def test_error_rate():
    f = jnp.array([0.5, -0.2, 0.0, 3.0, -1.0, 2.0])
    y = jnp.array([1.0, 1.0, -1.0, -1.0, -1.0, -1.0])
    mask = jnp.array([True, True, True, True, True, False])
    # wrong: index 1 (f<0, y=+1) and 3 (f>0, y=-1); f = 0 predicts -1 (correct); index 5 masked
    np.testing.assert_allclose(metrics.error_rate(f, y, mask), 2 / 5, rtol=1e-15)


def test_fit_exponential_rate():
    x = np.arange(1.0, 11.0)
    C, A = 0.73, 0.21
    e = A * np.exp(-C * x)
    e_with_zeros = e.copy()
    e_with_zeros[[7, 9]] = 0.0
    e_with_zeros[8] = np.nan
    for errors, used in [(e, 10), (e_with_zeros, 7)]:
        C_fit, A_fit, k = metrics.fit_exponential_rate(x, errors)
        np.testing.assert_allclose([C_fit, A_fit], [C, A], rtol=1e-10)
        assert k == used
    C_fit, A_fit, k = metrics.fit_exponential_rate([1.0, 2.0, 3.0], [0.1, 0.0, 0.0])
    assert math.isnan(C_fit) and math.isnan(A_fit) and k == 1
