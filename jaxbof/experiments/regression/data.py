"""Sampling a regression cell (device, one cell): points on the sphere, the target's zonal
harmonics, noise, test points and the (antisymmetric) init, drawn at a sweep's largest shape and
cropped exactly (`prep_shapes`, `crop`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbof import optim, sphere
from jaxbof.experiments.regression.step import Data, Inputs, Shape, Slot, State, Static, _trained
from jaxbof.model import TwoLayerParams, init_two_layer


def _antisymmetric(raw: TwoLayerParams, antisymmetric) -> TwoLayerParams:
    """theta_0 from the Gaussian draw `raw` of width M: `raw` itself, or (traced flag) the
    antisymmetric init, whose neurons j < M/2 are raw's and j + M/2 their copies with a -> -a.
    Equals model.init_two_layer(key, M, d, antisymmetric=...) of the same key (its draws are
    padding-exact: the antisymmetric width-M init is built on the first M/2 Gaussian neurons)."""
    M = raw.W_mxd.shape[0]
    if M % 2:
        return raw
    h = M // 2

    def anti(x, sign):
        return (
            None
            if x is None
            else jnp.where(antisymmetric, jnp.concatenate([x[:h], sign * x[:h]]), x)
        )

    return TwoLayerParams(anti(raw.W_mxd, 1.0), anti(raw.a_m, -1.0), anti(raw.b_m, 1.0))


def _finish(
    X,
    u,
    X_test,
    Y_test,
    xi,
    raw,
    eta,
    noise,
    rademacher,
    antisymmetric,
    coef,
    rec_steps,
    sh: Shape,
    degrees,
    optimizer: optim.Optimizer = optim.GD,
) -> Slot:
    """The slot of one cell from its random draws at the bucket's own shape: labels
    y = f*(X) + s * noise (f* = Y(X) coef), theta_0, the initial state (f_n = 0 until the
    record at step 0 sets it; the rule's state from theta_0's trained parameters)."""
    dt = X.dtype
    fstar = sphere.zonal_features(X, xi, degrees, sh.d) @ coef
    sign = jnp.where(u >= 0, 1.0, -1.0).astype(dt)
    y = fstar + noise * jnp.where(rademacher, sign, u)
    init = _antisymmetric(raw, antisymmetric)
    opt = optim.init(optimizer, eta, _trained(init.W_mxd, init.b_m, init.a_m, sh.train_outer))
    state = State(
        init.W_mxd,
        init.b_m,
        init.a_m,
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), bool),
        jnp.zeros((sh.n,), dt),
        opt,
    )
    data = Data(
        X,
        u,
        y,
        X_test,
        Y_test,
        xi,
        raw,
        init,
        eta,
        noise,
        rademacher,
        antisymmetric,
        coef,
        rec_steps,
        Static(bool(sh.train_outer)),
    )
    return Slot(state, data)


def prepare(
    inp: Inputs,
    sh: Shape,
    *,
    n_test: int,
    degrees: tuple[int, ...],
    optimizer: optim.Optimizer = optim.GD,
) -> Slot:
    """Sample one cell at shape `sh` (device): n training points (point i from fold_in, so a
    larger draw holds a smaller one as a prefix), one uniform [-1, 1) noise draw per point,
    n_test test points and their zonal features, one direction per degree, a Gaussian init of
    width M (neuron j from fold_in: prefix-exact too). `crop` cuts it to a smaller shape
    exactly; the empirical NTK at init is computed on the host's request (`init_fn`)."""
    dt = inp.eta.dtype
    data_key, noise_key, init_key, test_key = inp.keys
    x_key, dir_key = jax.random.fold_in(data_key, 0), jax.random.fold_in(data_key, 1)
    X = sphere.uniform(x_key, sh.n, sh.d, dtype=dt)
    xi = sphere.directions(dir_key, degrees, sh.d, dtype=dt)
    u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(noise_key, i), (), dt, -1.0, 1.0))(
        jnp.arange(sh.n)
    )
    X_test = sphere.uniform(test_key, n_test, sh.d, dtype=dt)
    Y_test = sphere.zonal_features(X_test, xi, degrees, sh.d)
    raw = init_two_layer(init_key, sh.width, sh.d, bias=sh.bias, antisymmetric=False, dtype=dt)
    return _finish(
        X,
        u,
        X_test,
        Y_test,
        xi,
        raw,
        inp.eta,
        inp.noise,
        inp.rademacher,
        inp.antisymmetric,
        inp.coef,
        jnp.asarray(inp.rec_steps, jnp.int32),
        sh,
        degrees,
        optimizer,
    )


def crop(
    slot: Slot, b: Shape, degrees: tuple[int, ...], optimizer: optim.Optimizer = optim.GD
) -> Slot:
    """Cut a slot prepared at a larger shape (n_pad >= n, M_pad >= M, with a bias draw) down to
    bucket b, exactly: the first n points and noise draws, the first M Gaussian neurons (b
    dropped without a bias), then labels, theta_0 and state rebuilt at b's shape (`_finish`)."""
    d = slot.data
    raw = TwoLayerParams(
        d.raw.W_mxd[: b.width],
        d.raw.a_m[: b.width],
        d.raw.b_m[: b.width] if b.bias else None,  # pyright: ignore[reportOptionalSubscript] - bias: set
    )
    return _finish(
        d.X[: b.n],
        d.u[: b.n],
        d.X_test,
        d.Y_test,
        d.xi,
        raw,
        d.eta,
        d.noise,
        d.rademacher,
        d.antisymmetric,
        d.coef,
        d.rec_steps,
        b,
        degrees,
        optimizer,
    )


def prep_shapes(groups) -> dict:
    """Every bucket of one d is sampled at Shape(max n, d, max M, bias=True, False) and cropped:
    the draws are cheap (O(n d + M d) per cell) while compiling a sampler costs ~10 s on the
    2-core CPU (each threefry site compiles in ~0.7 s), so one sampler per d is best."""
    fam: dict[int, list[Shape]] = {}
    for bkt in groups:
        fam.setdefault(bkt.d, []).append(bkt)
    out = {}
    for d, bs in fam.items():
        big = Shape(max(x.n for x in bs), d, max(x.width for x in bs), True, False)
        for bkt in bs:
            out[bkt] = big
    return out
