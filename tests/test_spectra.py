"""Sphere spectra: closed forms against independent references (binomials, quadrature, mpmath,
Monte Carlo, Gram matrices), trace identity and Mercer reconstruction."""

import math

import numpy as np
import pytest

from jaxbof import spectra as S

NAMES = ("ntk-first-layer", "ntk-both-layers", "relu-nngp")


# ------------------------------------------------------------------ multiplicities


def test_multiplicity_matches_harmonic_polynomial_dimension():
    # dim of degree-k harmonics = dim homogeneous degree k - dim homogeneous degree k - 2
    for d in (2, 3, 4, 7, 20, 50):
        k = np.arange(0, 61)
        direct = [
            math.comb(j + d - 1, d - 1) - (math.comb(j + d - 3, d - 1) if j >= 2 else 0)
            for j in map(int, k)
        ]
        np.testing.assert_allclose(S.multiplicity(d, k), np.array(direct, float), rtol=1e-12)
        formula = [1] + [
            (2 * j + d - 2) * math.comb(j + d - 3, d - 2) // j for j in map(int, k[1:])
        ]
        np.testing.assert_allclose(S.multiplicity(d, k), np.array(formula, float), rtol=1e-12)
    k = np.arange(0, 200)
    np.testing.assert_allclose(S.multiplicity(3, k), 2 * k + 1, rtol=1e-13)
    np.testing.assert_allclose(S.multiplicity(2, k), np.where(k == 0, 1, 2), rtol=1e-13)


def test_multiplicity_overflow_is_inf_but_log_finite():
    logn = S.log_multiplicity(10_000, np.array([1000]))
    assert np.isfinite(logn).all() and logn[0] > 710
    assert np.isinf(S.multiplicity(10_000, np.array([1000]))).all()
    np.testing.assert_allclose(S.multiplicity(10_000, 1), 10_000, rtol=1e-12)


# ------------------------------------------------------------------ analytic kernels


def test_leaky_kernels_match_monte_carlo():
    rng = np.random.default_rng(0)
    n = 400_000
    for alpha in (0.0, 0.1, 0.5):
        for u in (-0.7, 0.0, 0.4, 0.95):
            a = rng.standard_normal(n)
            b = u * a + np.sqrt(1 - u * u) * rng.standard_normal(n)
            sig = lambda z: np.maximum(z, alpha * z)
            dsig = lambda z: np.where(z > 0, 1.0, alpha)
            first_mc = u * np.mean(dsig(a) * dsig(b))
            nngp_mc = np.mean(sig(a) * sig(b))
            assert abs(S.ntk_first_layer(u, alpha) - first_mc) < 6e-3
            assert abs(S.relu_nngp(u, alpha) - nngp_mc) < 6e-3
            assert abs(S.ntk_both_layers(u, alpha) - first_mc - nngp_mc) < 1e-2


def test_kernel_values_at_one():
    assert S.ntk_first_layer(1.0) == pytest.approx(0.5)
    assert S.relu_nngp(1.0) == pytest.approx(0.5)
    assert S.relu_nngp(1.0, 0.3) == pytest.approx((1 + 0.3**2) / 2)


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("d", [2, 3, 100, 10_000])
def test_mu1_of_u_kappa0_is_quarter_over_d(d):
    assert S.eigenvalues("ntk-first-layer", d, 5).eigenvalue[1] == pytest.approx(
        1 / (4 * d), rel=1e-14
    )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [2, 3, 1000, 10_000])
def test_odd_levels_vanish_exactly_and_even_levels_positive(name, d):
    spec = S.eigenvalues(name, d, 1000)
    assert (spec.eigenvalue[3::2] == 0).all()
    assert (spec.log_eigenvalue[3::2] == -np.inf).all()
    assert np.isfinite(spec.log_eigenvalue[0::2]).all()
    assert np.isfinite(spec.log_eigenvalue[1])
    assert (np.diff(spec.log_eigenvalue[2::2]) < 0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("d", [2, 3, 5, 10])
@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_closed_form_matches_quadrature(name, d, alpha):
    kernel = lambda u: S.KERNELS[name](u, alpha)
    cf = S.eigenvalues(name, d, 10, alpha=alpha)
    q = S.eigenvalues_quadrature(kernel, d, 10)
    nonzero = cf.eigenvalue > 0
    assert q.reliable[nonzero].all()
    np.testing.assert_allclose(q.eigenvalue[nonzero], cf.eigenvalue[nonzero], rtol=1e-10)
    # exact zeros: quadrature returns rounding noise and flags it
    assert (np.abs(q.eigenvalue[~nonzero]) <= q.abs_error[~nonzero]).all()
    assert not q.reliable[~nonzero].any()


def test_closed_form_matches_high_precision_quadrature_at_large_d():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    d, k = 1000, 20
    lam = mp.mpf(d - 2) / 2
    norm = mp.gegenbauer(k, lam, 1)
    c = mp.gamma(mp.mpf(d) / 2) / (mp.sqrt(mp.pi) * mp.gamma(mp.mpf(d - 1) / 2))

    def integrand(s):  # theta = pi/2 + s, kernel u kappa0(u)
        t = -mp.sin(s)
        return (
            t
            * (mp.pi / 2 - s)
            / (2 * mp.pi)
            * mp.gegenbauer(k, lam, t)
            / norm
            * mp.cos(s) ** (d - 2)
        )

    pts = [-mp.pi / 2] + [j / mp.sqrt(d) for j in range(-12, 13)] + [mp.pi / 2]
    ref = float(c * mp.quad(integrand, pts))
    assert S.eigenvalues("ntk-first-layer", d, k).eigenvalue[k] == pytest.approx(ref, rel=1e-10)


def test_quadrature_flags_cancellation_at_large_d():
    d = 1000
    q = S.eigenvalues_quadrature(S.ntk_first_layer, d, 24)
    cf = S.eigenvalues("ntk-first-layer", d, 24)
    assert q.reliable[:3].all()
    np.testing.assert_allclose(q.eigenvalue[:3], cf.eigenvalue[:3], rtol=1e-9)
    assert not q.reliable[18:].any()
    assert np.abs(q.eigenvalue[20] - cf.eigenvalue[20]) <= q.abs_error[20]
    assert np.isfinite(cf.eigenvalue[20]) and cf.eigenvalue[20] > 0
    assert cf.eigenvalue[20] < 1e-13 * cf.eigenvalue[0]


def test_log_eigenvalues_below_float_range():
    spec = S.eigenvalues("ntk-both-layers", 10_000, 1000)
    assert spec.eigenvalue[1000] == 0.0
    assert np.isfinite(spec.log_eigenvalue[1000]) and spec.log_eigenvalue[1000] < -745
    shown = spec.eigenvalue > 0
    assert (spec.eigenvalue[shown] >= np.finfo(np.float64).tiny).all()  # no subnormals
    np.testing.assert_allclose(
        np.log(spec.eigenvalue[shown]), spec.log_eigenvalue[shown], rtol=1e-13
    )


@pytest.mark.parametrize("name", ["ntk-first-layer", "ntk-both-layers"])
@pytest.mark.parametrize("d", [3, 5])
def test_even_levels_decay_like_k_to_minus_d(name, d):
    spec = S.eigenvalues(name, d, 1000)
    k = np.arange(200, 1001, 2)
    slope = np.polyfit(np.log(k), spec.log_eigenvalue[k], 1)[0]
    assert slope == pytest.approx(-d, abs=0.05)


# ------------------------------------------------------------------ checks


@pytest.mark.parametrize("d", [3, 5])
@pytest.mark.parametrize("name", NAMES)
def test_trace_identity(d, name):
    spec = S.eigenvalues(name, d, 1000)
    k1 = float(S.KERNELS[name](1.0))
    check = S.trace_identity(spec, d, kernel_at_one=k1)
    assert (np.diff(check.partial_sums) >= 0).all()
    assert check.partial_sums[-1] < k1
    assert k1 - check.partial_sums[-1] < 2e-3
    assert abs(check.total - check.target) < 0.02 * (k1 - check.partial_sums[-1])


def test_mercer_reconstruction_d3():
    spec = S.eigenvalues("ntk-both-layers", 3, 1000)
    t = np.array([-0.9, -0.3, 0.0, 0.2, 0.7])
    np.testing.assert_allclose(S.mercer(spec, 3, t), S.ntk_both_layers(t), atol=1e-4)
    q = S.eigenvalues_quadrature(S.ntk_both_layers, 3, 60)
    np.testing.assert_allclose(S.mercer(q, 3, t), S.ntk_both_layers(t), atol=2e-3)


def test_gram_matrix_clusters_at_eigenvalues():
    rng = np.random.default_rng(1)
    n, d = 2000, 3
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    K = S.ntk_first_layer(np.clip(X @ X.T, -1, 1)) / n
    emp = np.sort(np.linalg.eigvalsh(K))[::-1]
    mu = S.eigenvalues("ntk-first-layer", d, 6).eigenvalue
    # expected order of the top levels: mu_1 (x3) > mu_0 (x1) > mu_2 (x5) > mu_4 ...
    levels = np.repeat(np.arange(7), S.multiplicity(d, np.arange(7)).astype(int))
    expected = np.repeat(mu, S.multiplicity(d, np.arange(7)).astype(int))
    order = np.argsort(-expected, kind="stable")
    for lev in (0, 1, 2):
        idx = np.flatnonzero(levels[order] == lev)
        assert np.mean(emp[idx]) == pytest.approx(mu[lev], rel=0.1)


@pytest.mark.parametrize("d", [3, 100, 10_000])
@pytest.mark.parametrize("name", NAMES)
def test_quadrature_error_estimate_bounds_true_error(d, name):
    cf = S.eigenvalues(name, d, 30)
    q = S.eigenvalues_quadrature(S.KERNELS[name], d, 30)
    err = np.abs(q.eigenvalue - cf.eigenvalue)
    assert (err <= q.abs_error + 1e-10 * cf.eigenvalue).all()  # 1e-10: closed-form rounding
    assert (err[q.reliable] <= 1e-6 * cf.eigenvalue[q.reliable]).all()
    assert q.reliable[:3].all()


@pytest.mark.parametrize("kernel", list(S.Kernel))
def test_empirical_levels_of_a_large_gram_match_mu(kernel):
    """Cluster means of the eigenvalues of K/n (n = 1500 uniform points on S^2) against mu_k."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    K = S.KERNELS[kernel](np.clip(x @ x.T, -1.0, 1.0))
    spec = S.eigenvalues(kernel, 3, 12)
    fit = S.empirical_levels(K, spec, 3)
    assert list(fit.k[:3]) == list(np.argsort(-spec.eigenvalue)[:3])
    assert np.all(fit.multiplicity == 2 * fit.k + 1)
    assert np.all(fit.rel_error[:3] < 0.1), fit.rel_error[:3]
    np.testing.assert_allclose(fit.sorted_empirical.sum(), K.trace() / 1500, rtol=1e-12)


def test_multiplicity_is_the_exact_integer():
    from math import comb

    for d in (2, 3, 7, 50, 300):
        for k in (0, 1, 2, 5, 17, 40):
            exact = (
                1 if k == 0 else (2 if d == 2 else (2 * k + d - 2) * comb(k + d - 3, d - 2) // k)
            )
            if exact < 1e13:
                assert S.multiplicity(d, k) == exact, (d, k)


# ------------------------------------------------------------------ bias kernels

BIAS_CASES = [
    (name, alpha, tb)
    for name in NAMES
    for alpha in (0.0, 0.1)
    for tb in (True, False)
    if not (name == "relu-nngp" and not tb)
]


def test_bias_kernels_match_monte_carlo_and_analytic_ntk():
    """z = w.x + b with w ~ N(0, I_d), b ~ N(0, 1): Monte Carlo of the defining expectations,
    and ntk.analytic_ntk (general input norms) restricted to the sphere."""
    import jax.numpy as jnp

    from jaxbof import ntk

    rng = np.random.default_rng(1)
    n = 400_000
    for alpha in (0.0, 0.2):
        sig = lambda z: np.maximum(z, alpha * z)
        dsig = lambda z: np.where(z > 0, 1.0, alpha)
        for u in (-0.8, 0.1, 0.9):
            g, h, b = rng.standard_normal((3, n))
            z, z2 = g + b, u * g + np.sqrt(1 - u * u) * h + b  # <x, w> for unit x, x'
            e_d = np.mean(dsig(z) * dsig(z2))
            assert abs(S.ntk_first_layer(u, alpha, bias=True) - (u + 1) * e_d) < 8e-3
            assert abs(S.ntk_first_layer(u, alpha, bias=True, train_bias=False) - u * e_d) < 6e-3
            assert abs(S.relu_nngp(u, alpha, bias=True) - np.mean(sig(z) * sig(z2))) < 1.5e-2
    x = rng.standard_normal((6, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    u = np.clip(x @ x.T, -1, 1)
    for layers, name in (
        (ntk.Layers.FIRST, "ntk-first-layer"),
        (ntk.Layers.BOTH, "ntk-both-layers"),
    ):
        for tb in (True, False):
            ref = np.asarray(
                ntk.analytic_ntk(jnp.asarray(x), layers=layers, alpha=0.2, bias=True, train_bias=tb)
            )
            np.testing.assert_allclose(
                S.kernel_fn(name, 0.2, True, tb)(u), ref, rtol=1e-7, atol=1e-9
            )


@pytest.mark.parametrize("d", [2, 3, 10, 50])
@pytest.mark.parametrize("name,alpha,train_bias", BIAS_CASES)
def test_bias_spectrum_matches_quadrature(name, alpha, train_bias, d):
    kernel = S.kernel_fn(name, alpha, True, train_bias)
    q = S.eigenvalues_quadrature(kernel, d, 40)
    cf = S.eigenvalues(name, d, 40, alpha, bias=True, train_bias=train_bias)
    err = np.abs(q.eigenvalue - cf.eigenvalue)
    assert (err <= 2 * q.abs_error + 1e-11 * cf.eigenvalue).all()
    assert (err[q.reliable] <= 1e-6 * cf.eigenvalue[q.reliable]).all()
    assert q.reliable[:4].all()


def test_bias_makes_every_level_positive_including_odd():
    for d in (3, 10, 1000):
        for name in NAMES:
            plain = S.eigenvalues(name, d, 30)
            biased = S.eigenvalues(name, d, 30, bias=True)
            assert (plain.eigenvalue[3::2] == 0).all()
            assert (biased.log_eigenvalue > -np.inf).all()
            if d <= 10:
                assert (biased.eigenvalue[3::2] > 1e-3 * biased.eigenvalue[2:-1:2]).all()


@pytest.mark.parametrize("d", [2, 100, 10_000])
def test_bias_spectrum_converged_to_1e10_up_to_k1000(d, monkeypatch):
    """Twice the Gauss-Legendre nodes change no level above 1e-300 mu_0 by more than 1e-10
    (relative); the integrands are positive, so this bounds the error up to far smaller terms."""
    ref = S.eigenvalues("ntk-both-layers", d, 1000, bias=True)
    nodes = S._bias_nodes
    monkeypatch.setattr(S, "_bias_nodes", lambda d_, k_: 2 * nodes(d_, k_))
    fine = S.eigenvalues("ntk-both-layers", d, 1000, bias=True)
    keep = ref.log_eigenvalue > ref.log_eigenvalue[0] + np.log(1e-300)
    assert keep[:100].all() and (d < 10_000 or not keep.all())
    assert np.abs(fine.log_eigenvalue - ref.log_eigenvalue)[keep].max() < 1e-10


def test_bias_spectrum_matches_high_precision_quadrature_at_large_d():
    """d = 1000, k = 15: mu_k / mu_0 ~ 1e-30, where float64 quadrature has lost every digit."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    d = 1000
    lam = mp.mpf(d - 2) / 2
    c = mp.gamma(mp.mpf(d) / 2) / (mp.sqrt(mp.pi) * mp.gamma(mp.mpf(d - 1) / 2))

    def kernel(t):  # (u + 1) kappa0((1 + u)/2): first layer with a trained bias
        return (t + 1) * (mp.pi - mp.acos((1 + t) / 2)) / (2 * mp.pi)

    spec = S.eigenvalues("ntk-first-layer", d, 15, bias=True)
    for k in (3, 15):
        norm = mp.gegenbauer(k, lam, 1)
        f = lambda s: (
            kernel(-mp.sin(s)) * mp.gegenbauer(k, lam, -mp.sin(s)) / norm * mp.cos(s) ** (d - 2)
        )
        pts = [-mp.pi / 2] + [j / mp.sqrt(d) for j in range(-12, 13)] + [mp.pi / 2]
        ref = float(c * mp.quad(f, pts))
        assert spec.eigenvalue[k] == pytest.approx(ref, rel=1e-9)
    assert spec.eigenvalue[15] < 1e-25 * spec.eigenvalue[0]


@pytest.mark.parametrize("name", NAMES)
def test_bias_trace_identity_and_mercer(name):
    d = 3
    spec = S.eigenvalues(name, d, 400, bias=True)
    k = S.kernel_fn(name, 0.0, True)
    tr = S.trace_identity(spec, d, float(k(1.0)))
    assert tr.total == pytest.approx(tr.target, rel=2e-4)
    t = np.linspace(-1, 0.9, 23)
    np.testing.assert_allclose(S.mercer(spec, d, t), k(t), atol=2e-4)


@pytest.mark.parametrize("d", [3, 100, 10_000])
@pytest.mark.parametrize("bias", [False, True])
def test_quadrature_error_estimate_is_a_bound_without_slack(d, bias):
    for name in NAMES:
        cf = S.eigenvalues(name, d, 60, bias=bias)
        q = S.eigenvalues_quadrature(S.kernel_fn(name, 0.0, bias), d, 60)
        assert (np.abs(q.eigenvalue - cf.eigenvalue) <= q.abs_error).all(), name


# ------------------------------------------------------------------ Grams of n points (jaxbof.gram)


@pytest.mark.parametrize("kernel, bias", [("ntk-first-layer", False), ("relu-nngp", True)])
def test_gram_top_dense_equals_the_largest_eigvalsh(kernel, bias):
    """gram.top_dense on gram.analytic_gram: the largest eigenvalues are those of
    numpy.linalg.eigvalsh, and the eigenvectors are orthonormal with K v = lambda v."""
    from jaxbof import gram

    rng = np.random.default_rng(3)
    x_nxd = rng.standard_normal((300, 4))
    x_nxd /= np.linalg.norm(x_nxd, axis=1, keepdims=True)
    K = gram.analytic_gram(kernel, x_nxd, 0.1, bias)
    found = gram.top_dense(K, 12)
    scale = np.linalg.eigvalsh(K)[-1]
    np.testing.assert_allclose(
        found.eigenvalue, np.linalg.eigvalsh(K)[::-1][:12], rtol=0, atol=1e-12 * scale
    )
    V = found.eigenvector
    np.testing.assert_allclose(V.T @ V, np.eye(12), atol=1e-12)
    assert np.all(np.linalg.norm(K @ V - V * found.eigenvalue, axis=0) < 1e-11 * scale)
    assert np.all(found.residual < 1e-11 * scale)


@pytest.mark.parametrize("kernel", list(S.Kernel))
@pytest.mark.parametrize("bias", [False, True])
def test_gram_trained_count_is_the_nets_and_bounds_twice_its_grams_rank(kernel, bias):
    """gram.trained_count p equals the trained entries of gram.two_layer's net, and the rank of
    its empirical Gram (n > p points) is at most p / 2 (the antisymmetric init pairs equal
    neurons: the bound `jaxbof spectrum --top` is checked against), with the exact rank counted
    by hand."""
    import jax

    from jaxbof import gram, sphere

    key = jax.random.PRNGKey(5)
    net = gram.two_layer(kernel, 3, 8, 0.1, bias, key)
    p = gram.trained_count(kernel, 3, 8, bias)
    assert p == sum(np.size(v) for v, t in zip(net.params, net.trainable) if t)
    K = gram.empirical_gram(net, sphere.uniform(jax.random.fold_in(key, 1), 60, 3))
    rank = np.linalg.matrix_rank(K)
    assert rank <= p // 2
    # 8 / 2 distinct neurons, each with d = 3 (+ 1 bias) first-layer directions, or one outer
    # weight alone for relu-nngp; with both layers sigma(z) = z sigma'(z) puts a neuron's outer
    # weight feature in the span of its first-layer ones
    assert rank == 4 * (1 if kernel == S.Kernel.RELU_NNGP else 3 + bias)
