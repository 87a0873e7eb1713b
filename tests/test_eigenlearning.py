"""The eigenlearning prediction (jaxbof.eigenlearning): its identities, a brute-force root find
on the expanded spectrum, the finite-n risk of kernel ridge regression measured directly on a
Gaussian design, and stability at d = 10^4, degree 1000, ridge -> 0."""

import math

import numpy as np
import pytest

from jaxbof import eigenlearning as E
from jaxbof import spectra

MAIN = [0.0, 0.25, 0.25, 0.0, 0.25]  # ||f*_k||^2 of the regression experiment's default target


@pytest.mark.parametrize("ridge", [0.0, 1e-6, 1e-2, 1.0])
@pytest.mark.parametrize("n", [10, 300, 5000])
def test_identities_on_the_sphere(n, ridge):
    lv = E.sphere_levels("ntk-first-layer", 3, 400)
    p = E.predict(n, lv, MAIN, noise_var=0.1, ridge=ridge)
    N = np.exp(lv.log_multiplicity)
    # sum_k N_k L_k = n - ridge / kappa (the equation kappa solves)
    np.testing.assert_allclose(np.sum(N * p.learnability) + ridge / p.kappa, n, rtol=1e-11)
    # E_0 = n / (n - sum N L^2), computed here the direct way
    np.testing.assert_allclose(p.e0, n / (n - np.sum(N * p.learnability**2)), rtol=1e-9)
    assert p.e0 >= 1.0 and 0.0 <= p.learnability.min() <= p.learnability.max() <= 1.0
    bias = p.e0 * np.sum((1 - p.learnability[:5]) ** 2 * MAIN)
    np.testing.assert_allclose(p.excess_risk, bias + (p.e0 - 1) * 0.1, rtol=1e-9)
    np.testing.assert_allclose(p.test_risk, p.excess_risk + 0.1, rtol=1e-12)
    np.testing.assert_allclose(p.train_risk, (ridge / (n * p.kappa)) ** 2 * p.test_risk, rtol=1e-12)
    assert np.all(p.learnability[1:][np.isfinite(lv.log_eigenvalue[1:])] > 0)
    assert np.all(p.learnability[3::2] == 0.0)  # odd levels >= 3 are zero without a bias


def test_a_dominant_ridge_gives_kappa_ridge_over_n_and_no_amplification():
    lv = E.sphere_levels("ntk-both-layers", 5, 100)
    trace = float(np.sum(np.exp(lv.log_multiplicity + lv.log_eigenvalue)))
    for ridge in (1e4 * trace, 1e8 * trace):
        p = E.predict(50, lv, MAIN, noise_var=1.0, ridge=ridge)
        np.testing.assert_allclose(p.kappa * 50 / ridge, 1.0, rtol=2 * trace / ridge)
        assert 0 <= p.e0 - 1 < 1e-3 * trace / ridge * 1e4
        np.testing.assert_allclose(p.learnability, 0.0, atol=2 * 50 / ridge)
    # ... and the excess risk tends to ||f*||^2 (nothing learned)
    np.testing.assert_allclose(p.excess_risk, sum(MAIN), rtol=1e-6)


def _bisect(f, lo, hi):
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


@pytest.mark.parametrize("ridge", [0.0, 1e-3, 0.3])
def test_kappa_equals_a_brute_force_root_on_the_expanded_spectrum(ridge):
    """Every eigenvalue written out N(d, k) times, the plain sum bisected in kappa."""
    d, k_max, n = 3, 30, 120
    s = spectra.eigenvalues("ntk-first-layer", d, k_max, bias=True)
    N = spectra.multiplicity(d, s.k).astype(int)
    every = np.repeat(s.eigenvalue, N)  # sum N_k = 961 modes
    kappa = _bisect(lambda k: np.sum(every / (every + k)) + ridge / k - n, 1e-30, 1e3)
    p = E.predict(n, E.levels(s.eigenvalue, N), [], ridge=ridge)
    np.testing.assert_allclose(p.kappa, kappa, rtol=1e-10)
    L = every / (every + kappa)
    np.testing.assert_allclose(p.e0, n / (n - np.sum(L**2)), rtol=1e-8)


@pytest.mark.parametrize("n, ridge, noise", [(50, 1e-2, 0.1), (100, 0.0, 0.1), (200, 1e-2, 0.0)])
def test_prediction_equals_the_finite_n_risk_of_a_gaussian_design(n, ridge, noise):
    """Kernel ridge regression with K = Phi diag(lam) Phi^T, Phi i.i.d. N(0, 1) (the features
    orthonormal under the data measure), target coefficients v: the excess risk of one training
    set is ||beta - v||^2 exactly; its mean over 300 draws (a Monte Carlo estimate of the
    finite-n expectation) against the prediction, within 3 standard errors. The equations are
    asymptotic: on this non-degenerate power-law spectrum they hold at n = 50 to 0.5%."""
    rng = np.random.default_rng(n)
    P = 400
    lam = 1.0 / np.arange(1, P + 1) ** 1.5
    v = rng.normal(size=P) / np.sqrt(np.arange(1, P + 1))
    risks = []
    for _ in range(300):
        Phi = rng.normal(size=(n, P))
        y = Phi @ v + rng.normal(size=n) * math.sqrt(noise)
        beta = lam * (Phi.T @ np.linalg.solve((Phi * lam) @ Phi.T + ridge * np.eye(n), y))
        risks.append(np.sum((beta - v) ** 2))
    mean, se = np.mean(risks), np.std(risks, ddof=1) / math.sqrt(len(risks))
    p = E.predict(n, E.levels(lam), v**2, noise_var=noise, ridge=ridge)
    assert abs(p.excess_risk - mean) < 3 * se, (p.excess_risk, mean, se)


def test_stable_at_d_1e4_degree_1000_and_ridge_to_zero():
    """N(10^4, 1000) ~ 10^1453 overflows float64; the log-space solve does not, and the
    ridgeless prediction is the limit of vanishing ridges."""
    lv = E.sphere_levels("ntk-first-layer", 10_000, 1000, bias=True)
    assert np.max(lv.log_multiplicity) > 3000  # float64 ends at e^709.8
    n = 100_000
    ridgeless = E.predict(n, lv, [0.0, 1.0, 0.5], noise_var=0.1, ridge=0.0)
    vals = [ridgeless.kappa, ridgeless.e0, ridgeless.test_risk]
    assert all(np.isfinite(vals)) and ridgeless.e0 >= 1
    tiny = E.predict(n, lv, [0.0, 1.0, 0.5], noise_var=0.1, ridge=1e-12 * ridgeless.kappa * n)
    np.testing.assert_allclose([tiny.kappa, tiny.e0, tiny.test_risk], vals, rtol=1e-9)
    # sum_k N_k L_k = n in log space: at high degrees L_k underflows float64, N_k L_k does not
    log_terms = lv.log_multiplicity + ridgeless.log_learnability
    assert np.sum(ridgeless.learnability == 0) > 0  # those levels exist here
    np.testing.assert_allclose(np.exp(np.logaddexp.reduce(log_terms)), n, rtol=1e-10)


def test_too_few_modes_without_a_ridge_and_bad_input_are_named():
    lv = E.levels([1.0, 0.5, 0.0], [1, 3, 5])  # 4 modes with mu > 0
    with pytest.raises(ValueError, match="has 4 modes with mu > 0"):
        E.predict(10, lv, [1.0])
    assert E.predict(10, lv, [1.0], ridge=0.1).e0 >= 1  # a ridge makes it well posed
    with pytest.raises(ValueError, match="n=0 must be"):
        E.predict(0, lv, [1.0])
    with pytest.raises(ValueError, match="ridge=-1.0 must be"):
        E.predict(10, lv, [1.0], ridge=-1.0)
    with pytest.raises(ValueError, match="energy has 4 levels, the spectrum 3"):
        E.predict(10, lv, [1.0, 0, 0, 0], ridge=0.1)
    with pytest.raises(ValueError, match="multiplicities must be >= 1"):
        E.levels([1.0], [0])


@pytest.mark.parametrize("ridge_over_n", [1e-4, 1e-2])
def test_prediction_equals_kernel_ridge_regression_on_the_sphere_with_a_ridge(ridge_over_n):
    """The regression experiment's setting, measured by the learning-curves plug-in
    (`krr.rows_for`; itself tested against a direct solve): x uniform on S^2, the first-layer NTK
    in closed form, f* = (Y_1 + Y_2 + Y_4) / 2 along random directions, uniform noise on
    [-0.5, 0.5]; kernel ridge regression K(X, X) + ridge I at n = 200 (ridge 0.02 and 2), its
    excess risk on 2000 fresh points, averaged over 40 training sets, against the prediction
    within 3 standard errors. (Without a ridge the prediction misses on this degenerate
    spectrum: docs/learning-curves.md.)"""
    from jaxbof.experiments.learning_curves import krr

    config = krr.Config(ns=(200,), ridges_over_n=(ridge_over_n,), seeds=40, k_max=8000, seed=7)
    levels = E.sphere_levels("ntk-first-layer", 3, config.k_max)
    rows = [r for seed in range(config.seeds) for r in krr.rows_for(config, 200, seed, levels)]
    risks = [r["excess_risk"] for r in rows]
    mean, se = np.mean(risks), np.std(risks, ddof=1) / math.sqrt(len(risks))
    p = E.predict(200, levels, config.energy(), config.noise**2 / 3, ridge_over_n * 200)
    assert {r["predicted_excess_risk"] for r in rows} == {p.excess_risk}
    assert abs(p.excess_risk - mean) < 3 * se, (p.excess_risk, mean, se)
