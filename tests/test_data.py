"""Data model of Definition 2.1: moments, corruption, padding and key determinism."""

import jax
import numpy as np
import pytest

from jaxbof import model
from jaxbof.experiments.classification import data
from jaxbof.experiments.classification.data import Corruption, Signal

# Every sampler is jitted with static padded shapes; n, d, gamma, rates and enums are traced, so
# the few shapes below compile once each.
sample = jax.jit(data.sample_train, static_argnames=("n_pad", "d_pad"))
init = jax.jit(model.init_weights, static_argnames=("width", "d_pad"))
sample_test = jax.jit(data.sample_test, static_argnames=("num", "d_pad"))

N, D, GAMMA = 4000, 50, 0.2


@pytest.fixture(scope="module", params=[Signal.E1, Signal.RANDOM], ids=["e1", "random"])
def big(request):
    td = sample(
        jax.random.PRNGKey(11),
        N,
        D,
        GAMMA,
        0.1,
        n_pad=N,
        d_pad=D,
        corruption=Corruption.BERNOULLI,
        signal=request.param,
    )
    return request.param, jax.tree.map(np.asarray, td)


def test_signal_vector_is_unit(big):
    signal, td = big
    v = td.v_d
    assert abs(np.linalg.norm(v) - 1.0) < 1e-14
    if signal == Signal.E1:
        assert np.array_equal(v, np.eye(D)[0])
    else:
        assert np.count_nonzero(v) == D  # a generic direction, not e_1


def test_coefficient_on_v_is_exact(big):
    _, td = big
    X, y, v = td.X_nxd, td.y_true_n, td.v_d
    assert set(np.unique(y)) == {-1.0, 1.0}
    np.testing.assert_allclose(X @ v, np.sqrt(GAMMA) * y, rtol=0, atol=1e-12)
    noise = X - np.sqrt(GAMMA) * y[:, None] * v[None, :]
    assert np.max(np.abs(noise @ v)) < 1e-12
    # the noise is not trivially zero: it carries the remaining (1 - gamma) of the energy
    assert np.mean(np.sum(noise**2, 1)) > 0.5


def test_squared_norm_moment(big):
    _, td = big
    sq = np.sum(td.X_nxd**2, axis=1)
    expected = GAMMA + (1 - GAMMA) * (D - 1) / D
    # ||x||^2 = gamma + (1-gamma) chi^2_{d-1} / d, so Var = (1-gamma)^2 2 (d-1) / d^2
    se = (1 - GAMMA) * np.sqrt(2 * (D - 1)) / D / np.sqrt(N)
    assert abs(sq.mean() - expected) < 4 * se
    np.testing.assert_allclose(sq.var(), (1 - GAMMA) ** 2 * 2 * (D - 1) / D**2, rtol=0.15)


def test_noise_covariance(big):
    _, td = big
    v = td.v_d
    Z = (td.X_nxd - np.sqrt(GAMMA) * td.y_true_n[:, None] * v[None, :]) / np.sqrt(1 - GAMMA)
    cov = Z.T @ Z / N
    target = (np.eye(D) - np.outer(v, v)) / D
    # entrywise sd of a sample covariance of N(0, I/d) entries: about (1/d) sqrt(2/N) or less
    assert np.max(np.abs(cov - target)) < 6 * np.sqrt(2.0 / N) / D


def test_labels_balanced_and_independent_of_noise(big):
    _, td = big
    y = td.y_true_n
    assert abs(y.mean()) < 4 / np.sqrt(N)
    Z = td.X_nxd - np.sqrt(GAMMA) * y[:, None] * td.v_d[None, :]
    # E[y z] = 0 coordinate-wise; each coordinate of z has sd <= 1/sqrt(d)
    assert np.max(np.abs(y @ Z / N)) < 5 / np.sqrt(D * N)


def test_corrupt_points_keep_true_signal_sign(big):
    _, td = big
    proj = td.X_nxd @ td.v_d
    assert np.all(np.sign(proj) == td.y_true_n)
    c = td.corrupt_n
    assert c.sum() > 100
    assert np.all(np.sign(proj[c]) == -td.y_obs_n[c])
    np.testing.assert_array_equal(td.y_obs_n, np.where(c, -td.y_true_n, td.y_true_n))


@pytest.mark.parametrize("n,rate", [(997, 0.1), (1024, 0.137), (50, 0.1), (50, 0.0), (33, 0.31)])
def test_exact_corruption_count(n, rate):
    n_pad = 1024
    k = int(round(rate * n))
    assert abs(rate * n - k) != 0.5  # avoid half-way cases where rounding conventions differ
    for seed in range(3):
        td = sample(
            jax.random.PRNGKey(seed),
            n,
            20,
            0.3,
            rate,
            n_pad=n_pad,
            d_pad=24,
            corruption=Corruption.EXACT,
            signal=Signal.E1,
        )
        c, mask = np.asarray(td.corrupt_n), np.asarray(td.mask_n)
        np.testing.assert_array_equal(mask, np.arange(n_pad) < n)
        assert c.sum() == k
        assert not c[n:].any()
        np.testing.assert_array_equal(np.asarray(td.y_obs_n) != np.asarray(td.y_true_n), c)


def test_exact_corruption_set_is_random():
    """The corrupt set changes with the key and is unrelated to the index or the label."""
    n, rate, trials = 200, 0.2, 40
    tds = [
        sample(
            jax.random.PRNGKey(100 + t),
            n,
            10,
            0.3,
            rate,
            n_pad=1024,
            d_pad=24,
            corruption=Corruption.EXACT,
        )
        for t in range(trials)
    ]
    c = np.stack([np.asarray(td.corrupt_n)[:n] for td in tds])
    y = np.stack([np.asarray(td.y_true_n)[:n] for td in tds])
    assert np.all(c.sum(1) == 40)
    freq = c.mean(0)  # each index corrupt with probability 0.2
    assert abs(freq.mean() - rate) < 1e-12
    assert np.max(np.abs(freq - rate)) < 5 * np.sqrt(rate * (1 - rate) / trials)
    frac_pos = (c & (y > 0)).sum() / c.sum()
    assert abs(frac_pos - 0.5) < 4 * np.sqrt(0.25 / c.sum())


@pytest.mark.parametrize("rate", [0.1, 0.35])
def test_bernoulli_corruption_rate(rate):
    n, n_pad = 3900, N
    td = sample(
        jax.random.PRNGKey(3),
        n,
        8,
        0.3,
        rate,
        n_pad=n_pad,
        d_pad=D,
        corruption=Corruption.BERNOULLI,
        signal=Signal.E1,
    )
    c = np.asarray(td.corrupt_n)
    assert not c[n:].any()
    frac = c[:n].mean()
    assert abs(frac - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    # flips are independent of the true label
    y = np.asarray(td.y_true_n)[:n]
    assert abs(c[:n][y > 0].mean() - c[:n][y < 0].mean()) < 5 * np.sqrt(4 * rate * (1 - rate) / n)


@pytest.mark.parametrize(
    "corruption", [Corruption.BERNOULLI, Corruption.EXACT], ids=["bernoulli", "exact"]
)
def test_padding_is_exact_e1(corruption):
    n, d, n_pad, d_pad = 37, 50, 64, 128
    key = jax.random.PRNGKey(7)
    small = sample(key, n, d, 0.2, 0.15, n_pad=n, d_pad=d, corruption=corruption, signal=Signal.E1)
    large = sample(
        key, n, d, 0.2, 0.15, n_pad=n_pad, d_pad=d_pad, corruption=corruption, signal=Signal.E1
    )
    small, large = jax.tree.map(np.asarray, (small, large))
    assert np.array_equal(large.X_nxd[:n, :d], small.X_nxd)  # bitwise
    assert np.all(large.X_nxd[n:] == 0) and np.all(large.X_nxd[:, d:] == 0)
    for name in ("y_true_n", "y_obs_n", "corrupt_n", "mask_n"):
        assert np.array_equal(getattr(large, name)[:n], getattr(small, name)), name
    assert not large.mask_n[n:].any() and not large.corrupt_n[n:].any()
    assert np.array_equal(large.v_d[:d], small.v_d) and np.all(large.v_d[d:] == 0)
    assert small.corrupt_n.any()


@pytest.mark.parametrize(
    "corruption", [Corruption.BERNOULLI, Corruption.EXACT], ids=["bernoulli", "exact"]
)
def test_padding_random_signal(corruption):
    """Signal.RANDOM: bitwise the same data (the reductions are padding-invariant)."""
    n, d, n_pad, d_pad = 37, 50, 64, 300
    key = jax.random.PRNGKey(7)
    small = sample(
        key, n, d, 0.2, 0.15, n_pad=n, d_pad=d, corruption=corruption, signal=Signal.RANDOM
    )
    large = sample(
        key, n, d, 0.2, 0.15, n_pad=n_pad, d_pad=d_pad, corruption=corruption, signal=Signal.RANDOM
    )
    small, large = jax.tree.map(np.asarray, (small, large))
    np.testing.assert_array_equal(large.X_nxd[:n, :d], small.X_nxd)
    np.testing.assert_array_equal(large.v_d[:d], small.v_d)
    assert np.all(large.X_nxd[n:] == 0) and np.all(large.X_nxd[:, d:] == 0)
    assert np.all(large.v_d[d:] == 0)
    for name in ("y_true_n", "y_obs_n", "corrupt_n", "mask_n"):
        assert np.array_equal(getattr(large, name)[:n], getattr(small, name)), name


def test_init_weights_padding_and_moments():
    key = jax.random.PRNGKey(4)
    width, d, scale = 64, 300, 0.37
    W = np.asarray(init(key, width, d, scale, d_pad=d))
    Wp = np.asarray(init(key, width, d, scale, d_pad=512))
    assert np.array_equal(Wp[:, :d], W) and np.all(Wp[:, d:] == 0)
    # i.i.d. N(0, scale^2): mean, variance, and no correlation between rows
    m = W.size
    assert abs(W.mean()) < 4 * scale / np.sqrt(m)
    assert abs(W.var() / scale**2 - 1) < 4 * np.sqrt(2 / m)
    C = W @ W.T / d / scale**2
    off = C[~np.eye(width, dtype=bool)]
    assert np.max(np.abs(off)) < 5 / np.sqrt(d)


def test_same_key_same_result_different_key_different():
    args = dict(n_pad=64, d_pad=128, corruption=Corruption.BERNOULLI, signal=Signal.RANDOM)
    k1, k2 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    a = jax.tree.map(np.asarray, sample(k1, 25, 33, 0.2, 0.2, **args))
    b = jax.tree.map(np.asarray, sample(k1, 25, 33, 0.2, 0.2, **args))
    c = jax.tree.map(np.asarray, sample(k2, 25, 33, 0.2, 0.2, **args))
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.X_nxd, c.X_nxd)
    assert not np.array_equal(a.v_d, c.v_d)
    assert not np.array_equal(a.y_true_n, c.y_true_n)

    W1 = init(k1, 64, 33, 0.1, d_pad=512)
    assert np.array_equal(W1, init(k1, 64, 33, 0.1, d_pad=512))
    assert not np.any(np.asarray(init(k2, 64, 33, 0.1, d_pad=512) == W1)[:, :33])

    v = a.v_d
    t1 = sample_test(k1, 50, 33, 0.2, v, d_pad=128)
    t2 = sample_test(k1, 50, 33, 0.2, v, d_pad=128)
    t3 = sample_test(k2, 50, 33, 0.2, v, d_pad=128)
    assert all(np.array_equal(x, y) for x, y in zip(t1, t2))
    assert not np.array_equal(t1[0], t3[0])


def test_random_signal_is_uniform_on_sphere():
    d, trials = 6, 4000
    keys = jax.random.split(jax.random.PRNGKey(9), trials)
    sv = jax.jit(jax.vmap(lambda k: data.signal_vector(k, d, d_pad=8, signal=Signal.RANDOM)))
    V = np.asarray(sv(keys))
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0, rtol=0, atol=1e-14)
    assert np.all(V[:, d:] == 0)
    V = V[:, :d]
    # E[v] = 0 and E[v v^T] = I / d for the uniform distribution on S^{d-1}
    assert np.max(np.abs(V.mean(0))) < 5 / np.sqrt(d * trials)
    second = V.T @ V / trials
    assert np.max(np.abs(second - np.eye(d) / d)) < 6 * np.sqrt(2 / trials) / d


def test_sample_test_distribution():
    d, gamma, num = 40, 0.3, 20000
    v = data.signal_vector(jax.random.PRNGKey(1), d, d_pad=d, signal=Signal.RANDOM)
    X, y = sample_test(jax.random.PRNGKey(2), num, d, gamma, v, d_pad=d)
    X, y, v = map(np.asarray, (X, y, v))
    np.testing.assert_allclose(X @ v, np.sqrt(gamma) * y, rtol=0, atol=1e-12)
    assert abs(y.mean()) < 4 / np.sqrt(num)
    sq = np.sum(X**2, 1)
    expected = gamma + (1 - gamma) * (d - 1) / d
    assert abs(sq.mean() - expected) < 4 * (1 - gamma) * np.sqrt(2 * (d - 1)) / d / np.sqrt(num)


def test_a_signal_known_when_compiling_gives_the_bits_of_a_traced_one():
    """The sweep compiles its sampler with the Signal known (prepare(signal=...)), which skips the
    products with e_1: the data are bitwise those of the traced signal, padded or not."""
    known = jax.jit(data.sample_train, static_argnames=("n_pad", "d_pad", "signal"))
    for n_pad, d_pad in ((30, 70), (37, 200)):
        for signal in (Signal.E1, Signal.RANDOM):
            a = known(
                jax.random.PRNGKey(5), 30, 70, 0.3, 0.2, n_pad=n_pad, d_pad=d_pad, signal=signal
            )
            b = sample(
                jax.random.PRNGKey(5),
                30,
                70,
                0.3,
                0.2,
                n_pad=n_pad,
                d_pad=d_pad,
                signal=int(signal),
            )
            for x, y in zip(a, b):
                assert np.array_equal(np.asarray(x), np.asarray(y)), (signal, n_pad, d_pad)
    A = np.random.default_rng(0).standard_normal((70, 300))
    A[:, 250:] = 0.0  # padding columns
    e1 = np.eye(300)[0]
    assert np.array_equal(data.along(A, e1, Signal.E1), jax.jit(data.along)(A, e1, 0))
    assert np.array_equal(data.along(A, e1, Signal.E1), A[:, 0])
