"""Network, hinge loss, its subgradient and the GD trainer (both parameterizations)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbof import model
from jaxbof.experiments.classification import data
from jaxbof.experiments.classification import step as train
from jaxbof.experiments.classification.data import Corruption, Signal
from jaxbof.experiments.classification.step import Hyper, Stop
from jaxbof.model import Outer

run = jax.jit(train.run)
gd_step = jax.jit(train.gd_step)
sample = jax.jit(data.sample_train, static_argnames=("n_pad", "d_pad"))
init = jax.jit(model.init_weights, static_argnames=("width", "d_pad"))


def hyper(alpha=0.1, eta=None, stop=Stop.ZERO_LOSS, max_steps=200_000, *, n, width):
    eta = 1.0 / (width * n) if eta is None else eta
    return Hyper(
        jnp.asarray(alpha, jnp.float64),
        jnp.asarray(eta, jnp.float64),
        jnp.asarray(int(stop), jnp.int32),
        jnp.asarray(max_steps, jnp.int32),
    )


def setup(seed, n=20, d=60, width=8, gamma=0.2, rate=0.15, n_pad=None, d_pad=None, **hp):
    """A published-protocol problem: init scale 1/(M sqrt d), eta = 1/(M n), exact corruption."""
    n_pad, d_pad = n_pad or n, d_pad or d
    dkey, wkey = jax.random.split(jax.random.PRNGKey(seed))
    td = sample(
        dkey,
        n,
        d,
        gamma,
        rate,
        n_pad=n_pad,
        d_pad=d_pad,
        corruption=Corruption.EXACT,
        signal=Signal.RANDOM,
    )
    W0 = init(wkey, width, d, 1.0 / (width * np.sqrt(d)), d_pad=d_pad)
    a = model.outer_weights(width, Outer.ALTERNATING, dtype=jnp.float64)
    return td, W0, a, hyper(n=n, width=width, **hp)


def direct(td, W0, a, hp):
    p = train.direct_problem(td.X_nxd, td.y_obs_n, td.mask_n, a, hp)
    return p, train.init_state(p, W0)


def gram(td, W0, a, hp):
    p = train.gram_problem(td.X_nxd, W0, td.y_obs_n, td.mask_n, a, hp)
    return p, train.init_state(p, W0)


# ----------------------------------------------------------------------------- model


def test_leaky_relu_and_outer_weights():
    z = jnp.array([-2.0, -0.5, 0.0, 0.3, 4.0])
    np.testing.assert_array_equal(model.leaky_relu(z, 0.1), [-0.2, -0.05, 0.0, 0.3, 4.0])
    np.testing.assert_array_equal(model.leaky_relu(z, 1.0), z)  # alpha = 1 is linear
    np.testing.assert_array_equal(model.leaky_relu(z, 0.0), [0, 0, 0, 0.3, 4.0])  # ReLU
    np.testing.assert_array_equal(model.leaky_relu_slope(z, 0.1), [0.1, 0.1, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(model.outer_weights(5), [1, -1, 1, -1, 1])
    np.testing.assert_array_equal(model.outer_weights(4, Outer.ALL_NEGATIVE), [-1, -1, -1, -1])
    # traced enum value
    f = jax.jit(model.outer_weights, static_argnums=0)
    np.testing.assert_array_equal(f(3, jnp.int32(1)), [-1, -1, -1])
    np.testing.assert_array_equal(
        model.predict(jnp.array([-1.0, 0.0, 1e-300, 2.0])), [-1, -1, 1, 1]
    )


def test_apply_matches_loop_reference():
    rng = np.random.default_rng(0)
    W, X = rng.normal(size=(6, 7)), rng.normal(size=(9, 7))
    a, alpha = rng.normal(size=6), 0.3
    ref = [sum(a[j] * max(W[j] @ x, alpha * (W[j] @ x)) for j in range(6)) for x in X]
    np.testing.assert_allclose(model.apply(W, a, alpha, X), ref, rtol=1e-13, atol=1e-14)


# ----------------------------------------------------------------------------- gradients


def _generic_point(seed=0, n=12, d=9, width=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    y = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    a = np.where(np.arange(width) % 2 == 0, 1.0, -1.0) * rng.uniform(0.5, 1.5, width)
    W = rng.normal(size=(width, d)) * 1.5
    mask = np.ones(n, bool)
    mask[-2:] = False  # two masked samples must not contribute
    return jnp.asarray(W), jnp.asarray(a), jnp.asarray(X), jnp.asarray(y), jnp.asarray(mask)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_autodiff_gradient_equals_handwritten_subgradient(alpha):
    W, a, X, y, mask = _generic_point()
    f = model.apply(W, a, alpha, X)
    margins = np.asarray(y * f)
    assert np.any(margins[:-2] > 1) and np.any(margins[:-2] < 1)  # both hinge branches occur
    g_auto = jax.grad(train.hinge_loss)(W, a, alpha, X, y, mask)
    g_hand = train.loss_grad_preacts(X @ W.T, y, mask, a, alpha).T @ X
    np.testing.assert_allclose(g_hand, g_auto, rtol=1e-12, atol=1e-14)
    assert np.linalg.norm(g_auto) > 0.1
    # and both equal a central finite difference (the loss is piecewise linear in W)
    direction = jax.random.normal(jax.random.PRNGKey(1), W.shape)
    h = 1e-7
    loss = lambda W_: train.hinge_loss(W_, a, alpha, X, y, mask)
    fd = (loss(W + h * direction) - loss(W - h * direction)) / (2 * h)
    np.testing.assert_allclose(fd, jnp.sum(g_hand * direction), rtol=1e-6)


def test_loss_ignores_masked_samples():
    W, a, X, y, mask = _generic_point()
    loss = train.hinge_loss(W, a, 0.2, X, y, mask)
    ref = np.sum(np.maximum(0, 1 - (y * model.apply(W, a, 0.2, X)))[:-2])
    np.testing.assert_allclose(loss, ref, rtol=1e-13)
    g = train.loss_grad_preacts(X @ W.T, y, mask, a, 0.2)
    assert np.all(np.asarray(g)[-2:] == 0)


def test_subgradient_conventions_at_kinks():
    """sigma'(0) = 1, and a margin of exactly 1 is fitted (no hinge subgradient)."""
    X = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    y = jnp.array([1.0, -1.0, 1.0])
    W = jnp.array([[1.0, 0.0]])  # pre-activations 1, 0, 0.5
    a = jnp.array([1.0])
    mask = jnp.ones(3, bool)
    g = np.asarray(train.loss_grad_preacts(X @ W.T, y, mask, a, 0.25))
    # sample 0: margin exactly 1 -> 0; sample 1: f = 0, H = 0 -> -y * a * sigma'(0) = 1 * 1;
    # sample 2: margin 0.5 -> -y * a * 1
    np.testing.assert_array_equal(g[:, 0], [0.0, 1.0, -1.0])
    f = model.apply(W, a, 0.25, X)
    np.testing.assert_array_equal(train.stop_reached(f, y, mask, Stop.ZERO_LOSS), False)
    # zero error: f = 0 predicts -1, which is right for sample 1; 0.5 > 0 right for sample 2
    np.testing.assert_array_equal(train.stop_reached(f, y, mask, Stop.ZERO_ERROR), True)
    mask2 = jnp.array([True, False, False])
    np.testing.assert_array_equal(train.stop_reached(f, y, mask2, Stop.ZERO_LOSS), True)


def test_outer_weights_are_frozen():
    W, a, X, y, mask = _generic_point()
    g_a = jax.grad(train.hinge_loss, argnums=1)(W, a, 0.1, X, y, mask)
    assert np.all(np.asarray(g_a) == 0.0)
    # without the stop_gradient the gradient wrt a would not vanish at this point
    free = lambda a_: train.hinge_loss_from_outputs(model.apply(W, a_, 0.1, X), y, mask)
    assert np.linalg.norm(jax.grad(free)(a)) > 1e-3


def test_training_leaves_outer_weights_unchanged():
    td, W0, a, hp = setup(0)
    a_before = np.array(a)
    for make in (direct, gram):
        p, s0 = make(td, W0, a, hp)
        s, _ = run(p, s0)
        assert bool(s.converged)
        assert np.array_equal(np.asarray(p.a_m), a_before)
        # the trained network fits the data with the ORIGINAL outer weights
        W = train.final_weights(p, s.theta, W0, td.X_nxd)
        assert np.all(np.asarray(td.y_obs_n * model.apply(W, a_before, 0.1, td.X_nxd)) >= 1)


# ----------------------------------------------------------------------------- runs


def numpy_gd(X, y, W0, a, alpha, eta, stop, max_steps):
    """Independent reference: plain NumPy subgradient descent with the same conventions."""
    W = np.array(W0)
    for t in range(max_steps + 1):
        H = X @ W.T
        f = np.where(H >= 0, H, alpha * H) @ a
        if stop == Stop.ZERO_LOSS:
            ok = np.all(y * f >= 1)
        else:
            ok = np.all(np.where(f > 0, 1.0, -1.0) == y)
        if ok or t == max_steps:
            return W, t, bool(ok)
        g = np.where(y * f < 1, -y, 0.0)
        dH = g[:, None] * a[None, :] * np.where(H >= 0, 1.0, alpha)
        W = W - eta * dH.T @ X


@pytest.mark.parametrize("stop", [Stop.ZERO_LOSS, Stop.ZERO_ERROR], ids=["zero_loss", "zero_error"])
def test_run_matches_numpy_reference(stop):
    td, W0, a, hp = setup(1, stop=stop)
    p, s0 = direct(td, W0, a, hp)
    s, _ = run(p, s0)
    W_ref, t_ref, ok = numpy_gd(
        *map(np.asarray, (td.X_nxd, td.y_obs_n, W0, a)), 0.1, float(hp.eta), stop, 10_000
    )
    assert ok and bool(s.converged) and t_ref > 20
    assert int(s.steps) == t_ref
    np.testing.assert_allclose(s.theta, W_ref, rtol=1e-10, atol=1e-13)


def test_zero_loss_and_zero_error_stops():
    td, W0, a, hp_loss = setup(2)
    hp_err = hp_loss._replace(stop=jnp.asarray(int(Stop.ZERO_ERROR), jnp.int32))
    X, y = td.X_nxd, td.y_obs_n
    assert int(td.corrupt_n.sum()) == 3

    p_loss, s0 = direct(td, W0, a, hp_loss)
    s_loss, _ = run(p_loss, s0)
    assert bool(s_loss.converged) and bool(s_loss.done) and not bool(s_loss.diverged)
    assert np.all(np.asarray(y * model.apply(s_loss.theta, a, 0.1, X)) >= 1.0)
    # zero loss is stationary: loss and subgradient vanish (not only because the run stopped)
    mask = td.mask_n
    assert float(train.hinge_loss(s_loss.theta, a, 0.1, X, y, mask)) == 0.0
    g = train.loss_grad_preacts(X @ s_loss.theta.T, y, mask, a, 0.1)
    assert np.all(np.asarray(g) == 0.0)

    p_err, _ = direct(td, W0, a, hp_err)
    s_err, _ = run(p_err, s0)
    assert bool(s_err.converged)
    assert np.all(np.asarray(model.predict(model.apply(s_err.theta, a, 0.1, X)) == y))
    assert 0 < int(s_err.steps) <= int(s_loss.steps)
    assert int(s_err.steps) < int(s_loss.steps)  # here the rules really differ
    # the zero-error run is the prefix of the zero-loss trajectory ...
    s_prefix, iters = run(p_loss, s0, int(s_err.steps))
    assert int(iters) == int(s_err.steps) and not bool(s_prefix.done)
    np.testing.assert_array_equal(s_prefix.theta, s_err.theta)
    # ... and stops at the FIRST step with zero training error
    p_short, _ = direct(td, W0, a, hp_err._replace(max_steps=s_err.steps - 1))
    s_short, _ = run(p_short, s0)
    assert not bool(s_short.converged)
    f_before = model.apply(s_short.theta, a, 0.1, X)
    assert np.any(np.asarray(model.predict(f_before) != y))


def test_max_steps_guard():
    td, W0, a, hp = setup(2, max_steps=3)
    for make in (direct, gram):
        p, s0 = make(td, W0, a, hp)
        s, iters = run(p, s0)
        assert bool(s.done) and not bool(s.converged) and not bool(s.diverged)
        assert int(s.steps) == 3
        # the guard keeps the weights of step 3
        s3 = s0
        for _ in range(3):
            s3 = gd_step(p, s3)
        np.testing.assert_array_equal(s.theta, s3.theta)
    # max_iters pauses a run without stopping it
    p, s0 = direct(td, W0, a, hp._replace(max_steps=jnp.asarray(1000, jnp.int32)))
    s, iters = run(p, s0, 2)
    assert int(iters) == 2 and int(s.steps) == 2 and not bool(s.done)


def test_divergence_flag():
    td, W0, a, hp = setup(2)
    X = td.X_nxd.at[0, 0].set(jnp.inf)
    p = train.direct_problem(X, td.y_obs_n, td.mask_n, a, hp)
    s, _ = run(p, train.init_state(p, W0))
    assert bool(s.diverged) and bool(s.done) and not bool(s.converged) and int(s.steps) == 0


@pytest.mark.parametrize(
    "shape",
    [dict(seed=3, n=20, d=60), dict(seed=4, n=30, d=12, gamma=0.3, rate=0.1)],
    ids=["d>n", "d<n"],
)
def test_gram_equals_direct(shape):
    td, W0, a, hp = setup(**shape)
    pd, sd0 = direct(td, W0, a, hp)
    pg, sg0 = gram(td, W0, a, hp)
    sd, _ = run(pd, sd0)
    sg, _ = run(pg, sg0)
    assert bool(sd.converged) and bool(sg.converged)
    assert int(sd.steps) == int(sg.steps) > 50
    Wd = train.final_weights(pd, sd.theta, W0, td.X_nxd)
    Wg = train.final_weights(pg, sg.theta, W0, td.X_nxd)
    assert np.linalg.norm(Wg - Wd) / np.linalg.norm(Wd) < 1e-10
    np.testing.assert_allclose(
        train.final_outputs(pg, sg.theta), train.final_outputs(pd, sd.theta), rtol=1e-9, atol=1e-12
    )
    # the trained network moved far from its (tiny) initialisation
    assert np.linalg.norm(Wd - W0) > 5 * np.linalg.norm(W0)


def test_padded_problem_equals_unpadded():
    """Masked (zero) samples and zero columns change neither the step count nor the weights."""
    td, W0, a, hp = setup(5, n=20, d=60)
    tdp, W0p, _, _ = setup(5, n=20, d=60, n_pad=24, d_pad=64)
    for make in (direct, gram):
        p, s0 = make(td, W0, a, hp)
        pp, sp0 = make(tdp, W0p, a, hp)
        s, _ = run(p, s0)
        sp, _ = run(pp, sp0)
        assert bool(s.converged) and int(s.steps) == int(sp.steps)
        W = train.final_weights(p, s.theta, W0, td.X_nxd)
        Wp = train.final_weights(pp, sp.theta, W0p, tdp.X_nxd)
        assert np.all(np.asarray(Wp)[:, 60:] == 0)
        np.testing.assert_allclose(Wp[:, :60], W, rtol=1e-10, atol=1e-13)


def test_vmapped_equals_looped():
    setups = [
        setup(10 + i, alpha=al, stop=st)
        for i, (al, st) in enumerate(
            [(0.1, Stop.ZERO_LOSS), (0.5, Stop.ZERO_ERROR), (1.0, Stop.ZERO_LOSS)]
        )
    ]
    for make in (direct, gram):
        singles = [make(*s) for s in setups]
        looped = [run(p, s0)[0] for p, s0 in singles]
        stack = lambda *xs: jnp.stack(xs)
        P = jax.tree.map(stack, *[p for p, _ in singles])
        S0 = jax.tree.map(stack, *[s0 for _, s0 in singles])
        S, _ = jax.jit(jax.vmap(train.run))(P, S0)
        steps = [int(s.steps) for s in looped]
        assert len(set(steps)) > 1  # the batch members stop at different times
        np.testing.assert_array_equal(S.steps, steps)
        assert np.all(np.asarray(S.converged))
        for i, s in enumerate(looped):
            np.testing.assert_allclose(S.theta[i], s.theta, rtol=1e-12, atol=1e-15)


def test_jit_equals_no_jit():
    td, W0, a, hp = setup(6)
    for make in (direct, gram):
        p, s0 = make(td, W0, a, hp)
        s_eager = s_jit = s0
        for _ in range(4):
            s_eager = train.gd_step(p, s_eager)
            s_jit = gd_step(p, s_jit)
        assert int(s_eager.steps) == int(s_jit.steps) == 4
        assert not np.allclose(s_eager.theta, s0.theta)
        np.testing.assert_allclose(s_jit.theta, s_eager.theta, rtol=1e-13, atol=1e-16)
