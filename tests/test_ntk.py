"""Empirical and analytic NTKs: independent routes agree, empirical converges to analytic."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbof import model, ntk, sphere
from jaxbof.ntk import (
    Layers,
    Route,
    TwoLayerParams,
    analytic_ntk,
    empirical_ntk_fn,
    init_two_layer,
    ntk_vector_product_fn,
    structured_ntk,
    two_layer_apply,
)

_sphere = sphere.uniform


def _rel(A, B):
    return float(jnp.max(jnp.abs(A - B)) / jnp.max(jnp.abs(B)))


def _mask(layers, bias):
    """trainable prefix mask selecting the first layer (W, b) or everything."""
    b = True if bias else None
    return TwoLayerParams(True, layers is Layers.BOTH, b)


CASES = [(layers, bias, 0.0) for layers in Layers for bias in (False, True)] + [
    (Layers.FIRST, True, 0.3),
    (Layers.BOTH, True, 0.3),
]


@pytest.mark.parametrize("layers,bias,alpha", CASES)
def test_two_layer_routes_agree_with_jacobian(layers, bias, alpha):
    k_init, k1, k2 = jax.random.split(jax.random.key(0), 3)
    d, M = 4, 12
    params = init_two_layer(k_init, M, d, bias=bias, antisymmetric=False)
    x1, x2 = jax.random.normal(k1, (7, d)), jax.random.normal(k2, (5, d))
    apply_fn = functools.partial(two_layer_apply, alpha=alpha)
    tr = _mask(layers, bias)
    ref = empirical_ntk_fn(apply_fn, route=Route.JACOBIAN, trainable=tr)(params, x1, x2)
    for route in Route:
        for bs in (None, 3):
            K = jax.jit(empirical_ntk_fn(apply_fn, route=route, trainable=tr, batch_size=bs))(
                params, x1, x2
            )
            assert K.shape == (7, 5)
            assert _rel(K, ref) < 1e-10, (route, bs)
    K = structured_ntk(params, x1, x2, layers=layers, alpha=alpha)
    assert _rel(K, ref) < 1e-10


def test_trainable_callable_and_frozen_layers():
    params = init_two_layer(jax.random.key(1), 8, 3, bias=True)
    x = jax.random.normal(jax.random.key(2), (6, 3))
    only_W = empirical_ntk_fn(
        two_layer_apply, trainable=lambda p: TwoLayerParams(True, False, False)
    )(params, x)
    # W only: no "+1" from the bias gradient
    assert _rel(only_W, structured_ntk(params, x, layers=Layers.FIRST, train_bias=False)) < 1e-10
    K_struct = empirical_ntk_fn(
        two_layer_apply, route=Route.STRUCTURED, trainable=TwoLayerParams(True, False, False)
    )(params, x)
    assert _rel(K_struct, only_W) < 1e-10
    with pytest.raises(ValueError, match="STRUCTURED"):
        empirical_ntk_fn(lambda p, x: two_layer_apply(p, x), route=Route.STRUCTURED)(params, x)


def _mlp():
    """A small Flax MLP (flax is a test-only dependency: absent, the test skips)."""
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.tanh(nn.Dense(8, param_dtype=jnp.float64)(x))
            x = nn.relu(nn.Dense(6, param_dtype=jnp.float64)(x))
            return nn.Dense(1, param_dtype=jnp.float64)(x)

    return MLP()


def test_flax_mlp_routes_agree_and_batching():
    d = 5
    module = _mlp()
    x1 = jax.random.normal(jax.random.key(3), (9, d))
    x2 = jax.random.normal(jax.random.key(4), (6, d))
    params = module.init(jax.random.key(5), x1[:1])
    apply_fn = lambda p, x: module.apply(p, x[None])[0, 0]
    ref = jax.jit(empirical_ntk_fn(apply_fn))(params, x1, x2)
    # explicit reference written out by hand: flatten the full Jacobian
    flat = lambda x: jnp.concatenate(
        [g.ravel() for g in jax.tree.leaves(jax.grad(apply_fn)(params, x))]
    )
    J1, J2 = jax.jit(jax.vmap(flat))(x1), jax.jit(jax.vmap(flat))(x2)
    assert _rel(ref, J1 @ J2.T) < 1e-10
    for bs in (None, 4):
        K = jax.jit(empirical_ntk_fn(apply_fn, route=Route.NTVP, batch_size=bs))(params, x1, x2)
        assert _rel(K, ref) < 1e-10
    # first layer only via a prefix mask on the Flax dict
    mask = {"params": {"Dense_0": True, "Dense_1": False, "Dense_2": False}}
    K0 = jax.jit(empirical_ntk_fn(apply_fn, route=Route.NTVP, trainable=mask, batch_size=4))(
        params, x1, x2
    )
    n0 = sum(g.size for g in jax.tree.leaves(params["params"]["Dense_0"]))
    assert _rel(K0, J1[:, :n0] @ J2[:, :n0].T) < 1e-10
    # NTK-vector product equals the Gram times a vector
    v = jax.random.normal(jax.random.key(6), (6,))
    Kv = ntk_vector_product_fn(apply_fn)(params, x1, x2, v)
    assert _rel(Kv, ref @ v) < 1e-10


@pytest.mark.parametrize("route", list(Route))
def test_batched_equals_unbatched_and_jit(route):
    params = init_two_layer(jax.random.key(7), 16, 6, bias=True)
    x = jax.random.normal(jax.random.key(8), (10, 6))
    K = empirical_ntk_fn(two_layer_apply, route=route)(params, x)
    for bs in (1, 3, 10, 32):
        Kb = jax.jit(empirical_ntk_fn(two_layer_apply, route=route, batch_size=bs))(params, x)
        np.testing.assert_allclose(Kb, K, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layers", list(Layers))
def test_gram_symmetric_psd(layers):
    params = init_two_layer(jax.random.key(9), 16, 3, bias=True)
    x = _sphere(jax.random.key(10), 10, 3)
    for K in (
        empirical_ntk_fn(two_layer_apply, route=Route.NTVP, trainable=_mask(layers, True))(
            params, x
        ),
        structured_ntk(params, x, layers=layers),
        analytic_ntk(x, layers=layers, bias=True),
    ):
        np.testing.assert_allclose(K, K.T, rtol=1e-12, atol=1e-14)
        ev = np.linalg.eigvalsh(np.asarray(K))
        assert ev.min() >= -1e-10 * ev.max()


def test_antisymmetric_init_is_zero_and_odd_width_raises():
    for M, bias in ((2, False), (10, True), (1000, True)):
        params = init_two_layer(jax.random.key(M), M, 7, bias=bias)
        x = jax.random.normal(jax.random.key(11), (33, 7))
        assert np.all(np.asarray(two_layer_apply(params, x)) == 0.0)
        assert float(two_layer_apply(params, x[0], alpha=0.2)) == 0.0
        assert np.all(np.asarray(jax.jit(two_layer_apply)(params, x)) == 0.0)
    with pytest.raises(ValueError, match="width=7"):
        init_two_layer(jax.random.key(0), 7, 3)
    # standard init: odd widths fine, and f is not identically zero
    params = init_two_layer(jax.random.key(0), 7, 3, antisymmetric=False)
    assert float(jnp.abs(two_layer_apply(params, jnp.ones((4, 3)))).max()) > 0
    # same key, same draw
    p1, p2 = init_two_layer(jax.random.key(3), 8, 3), init_two_layer(jax.random.key(3), 8, 3)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)))


def test_two_layer_net_lives_in_model_and_ntk_reexports_it():
    assert ntk.init_two_layer is model.init_two_layer
    assert ntk.two_layer_apply is model.two_layer_apply
    assert ntk.TwoLayerParams is model.TwoLayerParams
    params = model.init_two_layer(jax.random.key(4), 8, 3)
    x = _sphere(jax.random.key(5), 6, 3)
    K = empirical_ntk_fn(
        functools.partial(model.two_layer_apply, alpha=0.2), route=Route.STRUCTURED
    )(params, x)
    assert _rel(K, structured_ntk(params, x, layers=Layers.BOTH, alpha=0.2)) < 1e-14


def test_init_two_layer_is_padding_exact():
    """Neuron j from fold_in(key, j), column c from fold_in(neuron's w key, c): a wider or
    d_pad-padded draw holds the smaller one as a prefix, bit for bit."""
    key = jax.random.key(17)
    A = init_two_layer(key, 16, 3, bias=True)  # antisymmetric: base rows 0..7, copies 8..15
    C = init_two_layer(key, 8, 3, bias=True)  # base rows 0..3
    for leaf_A, leaf_C in zip(A, C):
        assert np.array_equal(leaf_C[:4], leaf_A[:4])
    assert np.array_equal(A.W_mxd[8:], A.W_mxd[:8]) and np.array_equal(A.b_m[8:], A.b_m[:8])
    assert np.array_equal(A.a_m[8:], -A.a_m[:8])
    # the standard width-M draw is the base of the antisymmetric width-2M one
    B = init_two_layer(key, 8, 3, bias=True, antisymmetric=False)
    assert all(np.array_equal(b, a[:8]) for a, b in zip(A, B))
    # d_pad: the first d columns are the d draw, the rest exactly zero; d may be traced
    D = init_two_layer(key, 16, 3, bias=True, d_pad=6)
    assert D.W_mxd.shape == (16, 6) and np.array_equal(D.W_mxd[:, :3], A.W_mxd)
    assert np.all(np.asarray(D.W_mxd[:, 3:]) == 0.0)
    assert np.array_equal(D.a_m, A.a_m) and np.array_equal(D.b_m, A.b_m)
    E = jax.jit(lambda d: init_two_layer(key, 16, d, bias=True, d_pad=6))(3)
    assert all(np.array_equal(e, dd) for e, dd in zip(E, D))
    # the bias is drawn from its own key: W and a are the same without it
    F = init_two_layer(key, 16, 3)
    assert F.b_m is None
    assert np.array_equal(F.W_mxd, A.W_mxd) and np.array_equal(F.a_m, A.a_m)
    # the padded net is the same function of the padded inputs, and still zero at init
    x = _sphere(jax.random.key(18), 9, 3)
    assert np.all(np.asarray(two_layer_apply(D, jnp.pad(x, ((0, 0), (0, 3))), alpha=0.1)) == 0.0)
    with pytest.raises(ValueError, match="d=7 exceeds d_pad=6"):
        init_two_layer(key, 16, 7, d_pad=6)
    with pytest.raises(ValueError, match="width=5"):
        init_two_layer(key, 5, 3, d_pad=6)
    assert (
        jax.eval_shape(lambda: init_two_layer(key, 4, 3, dtype=jnp.float32)).W_mxd.dtype
        == jnp.float32
    )


def test_init_two_layer_distribution():
    """w_jc ~ N(0, 1), a_j = +-1 with probability 1/2, b_j ~ N(0, 1), independent (4 sigma)."""
    M, d = 4096, 8
    p = init_two_layer(jax.random.key(19), M, d, bias=True, antisymmetric=False)
    W, a, b = (np.asarray(v) for v in p)
    assert set(np.unique(a)) == {-1.0, 1.0}
    for z, n in ((W.ravel(), M * d), (b, M)):
        assert abs(z.mean()) < 4 / np.sqrt(n)
        assert abs(z.var() - 1.0) < 4 * np.sqrt(2 / n)
    assert abs(a.mean()) < 4 / np.sqrt(M)
    # no correlation between a neuron's entries, its outer weight and its bias
    Z = np.column_stack([W[:, :3], a, b])
    C = np.corrcoef(Z.T) - np.eye(5)
    assert np.abs(C).max() < 4 / np.sqrt(M)


def test_analytic_diagonal_values():
    x = _sphere(jax.random.key(12), 6, 4)
    for alpha in (0.0, 0.3):
        first = jnp.diag(analytic_ntk(x, layers=Layers.FIRST, alpha=alpha))
        both = jnp.diag(analytic_ntk(x, layers=Layers.BOTH, alpha=alpha))
        # E[sigma'^2] = (1 + alpha^2)/2, E[sigma^2] = (1 + alpha^2)/2 at unit variance
        np.testing.assert_allclose(first, (1 + alpha**2) / 2, rtol=1e-14)
        np.testing.assert_allclose(both, 1 + alpha**2, rtol=1e-14)
    # bias: c = 2 and s^2 = 2, so first = 2 * 1/2 and both = 1 + 2 * 1/2
    np.testing.assert_allclose(jnp.diag(analytic_ntk(x, bias=True)), 1.0, rtol=1e-14)
    np.testing.assert_allclose(
        jnp.diag(analytic_ntk(x, layers=Layers.BOTH, bias=True)), 2.0, rtol=1e-14
    )
    # off-diagonal: the closed forms u kappa0(u) and u kappa0(u) + kappa1(u)
    u = np.clip(np.asarray(x @ x.T), -1, 1)
    np.fill_diagonal(u, 1.0)  # |x| = 1 up to rounding, which arccos would amplify to ~1e-8
    k0 = (np.pi - np.arccos(u)) / (2 * np.pi)
    k1 = (u * (np.pi - np.arccos(u)) + np.sqrt(1 - u * u)) / (2 * np.pi)
    np.testing.assert_allclose(analytic_ntk(x), u * k0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        analytic_ntk(x, layers=Layers.BOTH), u * k0 + k1, rtol=1e-12, atol=1e-14
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _mean_err(layers, bias, x, M, seeds):
    """Relative Frobenius error of the empirical NTK at init, averaged over `seeds` keys."""
    A = analytic_ntk(x, layers=layers, bias=bias)

    def err(key):
        K = structured_ntk(init_two_layer(key, M, x.shape[1], bias=bias), x, layers=layers)
        return jnp.linalg.norm(K - A) / jnp.linalg.norm(A)

    return jnp.mean(jax.vmap(err)(jax.random.split(jax.random.key(M), seeds)))


@pytest.mark.parametrize(
    "layers,bias",
    [(Layers.FIRST, False), (Layers.BOTH, False), (Layers.FIRST, True), (Layers.BOTH, True)],
)
def test_empirical_converges_like_inverse_sqrt_width(layers, bias):
    x = _sphere(jax.random.key(13), 20, 5)
    err = {M: float(_mean_err(layers, bias, x, M, 8)) for M in (256, 1024, 4096)}
    assert err[256] > err[1024] > err[4096]
    assert 1 / 8 < err[4096] / err[256] < 1 / 2  # 1/sqrt(16) = 1/4 expected


@pytest.mark.parametrize(
    "layers,bias,alpha,unit",
    [
        (Layers.FIRST, False, 0.0, True),
        (Layers.BOTH, False, 0.0, True),
        (Layers.FIRST, True, 0.0, True),
        (Layers.BOTH, True, 0.0, True),
        (Layers.BOTH, False, 0.2, True),
        (Layers.BOTH, True, 0.2, True),
        (Layers.BOTH, True, 0.0, False),
        (Layers.BOTH, False, 0.2, False),
    ],
)
def test_analytic_matches_wide_network(layers, bias, alpha, unit):
    """At M = 16384 the empirical NTK is a mean over M/2 i.i.d. neuron pairs, so its error is
    ~ std/sqrt(M/2): the tolerance is 5 such standard errors, estimated from the sample."""
    M, n, d = 16384, 12, 5
    x = _sphere(jax.random.key(14), n, d)
    if not unit:  # non-unit norms exercise the general arc-cosine formulas (s s' kappa1(rho))
        x = x * jax.random.uniform(jax.random.key(15), (n, 1), minval=0.3, maxval=2.0)
    p = init_two_layer(jax.random.key(16), M, d, bias=bias)
    H = x @ p.W_mxd.T + (0.0 if p.b_m is None else p.b_m)
    S = jnp.where(H >= 0, 1.0, alpha)
    G = x @ x.T + (1.0 if bias else 0.0)
    # per-neuron contributions, pairs (j, j + M/2) merged: they are identical at init
    terms = G[:, :, None] * S[:, None, : M // 2] * S[None, :, : M // 2]
    if layers is Layers.BOTH:
        A = jnp.where(H >= 0, H, alpha * H)
        terms = terms + A[:, None, : M // 2] * A[None, :, : M // 2]
    K_emp = structured_ntk(p, x, layers=layers, alpha=alpha)
    np.testing.assert_allclose(terms.mean(-1), K_emp, rtol=1e-10, atol=1e-12)
    stderr = terms.std(-1) / np.sqrt(M // 2)
    K_inf = analytic_ntk(x, layers=layers, alpha=alpha, bias=bias)
    err = float(jnp.linalg.norm(K_emp - K_inf))
    tol = 5 * float(jnp.linalg.norm(stderr))
    assert err < tol, (err, tol)
    assert err / float(jnp.linalg.norm(K_inf)) < 0.05
