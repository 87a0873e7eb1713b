"""Spiky-smooth networks (Haas et al. 2023, Fig. 1c; the published `train_spikysmooth_nns.py`)
as an `engine.Experiment`: every seed and both activations train at once, SGD with batch size 1.

The published parameterisation (not `jaxbof.model`'s): each of two copies of width M computes

    f_c(x) = sqrt(2/M) sum_j a_j phi(sqrt(2/d) <w_j, x> + b_j) + beta_c,
    w_j ~ N(0, I_d), a_j ~ N(0, 1), b_j = beta_c = 0 at init, all trained,

the second copy a copy of the first, and the net is f = (f_1 - f_2) / sqrt(2), so f_0 = 0. With
a~_j = +a_j on the first copy's neurons and -a_j on the second's, this is one layer of 2M
neurons, f(x) = M^(-1/2) sum_j a~_j phi(z_j) + beta, z_j = sqrt(2/d) <w_j, x> + b_j,
beta = (beta_1 - beta_2) / sqrt(2), and SGD on the two copies is SGD on (W, b, a~) with the
output bias taking steps lr * dL/dbeta exactly as (beta_1, beta_2) do together. The loss is
(y - f)^2 without 1/2 (lr = 0.04 is for that loss), one sample per step, a fresh order each epoch.

Activations: relu, and relu(z) + (sin(w z) + cos(w z)) / w ("spiky-smooth", w the frequency,
published 100), whose derivative 1[z > 0] + cos(w z) - sin(w z) reuses the same sin and cos.
The activation is a bucket (static): a batch of runs never evaluates the sines it does not need.

Data per seed (shared by both activations, with the initialisation and the SGD order: the
activation is not folded into the keys): n points uniform on S^1 (d = 2), y = x_1 + noise of
variance noise_var; test points from the same law with noisy labels (RMSE floor
sqrt(noise_var)). Each run halts at a log-spaced set of epochs ending at the last; the report
measures train RMSE (all n points) and test RMSE on the first n_curve test points on the device,
and at the last epoch the test RMSE on all n_test points and the signal network's (the trained
weights evaluated with plain relu, which removes the spikes).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine as _engine
from jaxbof.experiments.haas_spikes.grid import (
    ACTIVATIONS,
    CIRCLE_POINTS,
    KEYS,
    SCHEMA,
    Cell,
    Protocol,
    record_epochs,
)

__all__ = [
    "Data",
    "Params",
    "Slot",
    "State",
    "activation",
    "default_engine",
    "epoch_step",
    "experiment",
    "forward",
    "init",
    "predict",
    "sgd_step",
]


class Params(NamedTuple):
    """The 2M neurons of both copies, coordinates stored apart (contiguous per neuron field)."""

    w0: jax.Array  # (2M,) first input weight
    w1: jax.Array  # (2M,) second input weight
    b: jax.Array  # (2M,) hidden bias
    a: jax.Array  # (2M,) outer weight, signed: +a on the first copy, -a on the second
    beta: jax.Array  # () output bias (beta_1 - beta_2) / sqrt(2)


class State(NamedTuple):
    params: Params
    epoch: jax.Array  # int32 epochs done
    steps: jax.Array  # int32 SGD steps done (the engine's)
    done: jax.Array  # bool: at a recorded epoch (or diverged): the host measures
    rec: jax.Array  # int32 index of the next recorded epoch
    diverged: jax.Array  # bool: a non-finite output was seen


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Static:
    """A compile-time value in a slot (no leaves): the activation of the bucket."""

    value: object


class Data(NamedTuple):
    X: jax.Array  # (n, 2) training points on the circle
    y: jax.Array  # (n,) noisy labels
    X_test: jax.Array  # (n_test, 2)
    y_test: jax.Array  # (n_test,) noisy labels
    order_key: jax.Array  # the SGD orders: epoch e uses fold_in(order_key, e)
    rec_epochs: jax.Array  # (R,) int32 recorded epochs, increasing, the last = epochs
    kind: _Static  # the activation (the bucket), static: the step compiles for it


class Slot(NamedTuple):
    state: State
    data: Data


_PI_HI = np.float32(3.140625)  # pi in two parts: k * _PI_HI is exact for |k| < 2^16
_PI_LO = np.float32(math.pi - 3.140625)


def sincos(v):
    """(sin v, cos v) elementwise: v reduced to r in [-pi/2, pi/2] (v = r + k pi, Cody-Waite)
    and the Taylor polynomials of degree 11 and 12 in r (truncation below 6e-8 there). Within
    2e-7 of the exact values for float32 |v| up to 10^4 (tested); XLA's CPU sin and cos cost
    about 6x as much, which made them most of the spiky-smooth step. In float64 (--x64) the
    polynomials would be the error's floor: XLA's sin and cos are used there."""
    if v.dtype == jnp.float64:
        return jnp.sin(v), jnp.cos(v)
    k = jnp.round(v * (1 / math.pi))
    r = (v - k * _PI_HI) - k * _PI_LO
    r2 = r * r
    s = r * (
        1
        + r2
        * (-1 / 6 + r2 * (1 / 120 + r2 * (-1 / 5040 + r2 * (1 / 362880 + r2 * (-1 / 39916800)))))
    )
    c = 1 + r2 * (
        -1 / 2
        + r2
        * (1 / 24 + r2 * (-1 / 720 + r2 * (1 / 40320 + r2 * (-1 / 3628800 + r2 * (1 / 479001600)))))
    )
    sign = 1 - 2 * (k.astype(jnp.int32) & 1).astype(v.dtype)  # (-1)^k
    return sign * s, sign * c


def activation(kind: str, frequency):
    """(phi(z), phi'(z)) of relu or spiky-smooth, elementwise. With u = w z,
    sin u + cos u = sqrt(2) sin(u + pi/4) and cos u - sin u = sqrt(2) cos(u + pi/4): one
    reduction and one pair of polynomials per z (`sincos`)."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation {kind!r}: expected one of {', '.join(ACTIVATIONS)}")

    def fn(z):
        pos = z > 0
        relu, step = jnp.where(pos, z, 0), pos.astype(z.dtype)
        if kind == "relu":
            return relu, step
        s, c = sincos(frequency * z + math.pi / 4)
        return relu + (math.sqrt(2) / frequency) * s, step + math.sqrt(2) * c

    return fn


def _scale(d: int) -> float:
    return math.sqrt(2.0 / d)  # He scaling of the input layer, sqrt(2 / fan_in)


def forward(params: Params, X_mxd, phi):
    """f on points X (m, 2): (m,) outputs, M^(-1/2) sum_j a~_j phi(z_j) + beta."""
    M = params.a.shape[0] // 2
    g = _scale(2)
    z = g * (X_mxd[:, :1] * params.w0 + X_mxd[:, 1:] * params.w1) + params.b  # (m, 2M)
    return phi(z)[0] @ params.a / math.sqrt(M) + params.beta


def sgd_step(params: Params, x, y, lr, phi) -> tuple[Params, jax.Array]:
    """One SGD step on (y - f(x))^2 at one point x (2,): (new params, f(x) before the step)."""
    M = params.a.shape[0] // 2
    g, c = _scale(2), 1.0 / math.sqrt(M)
    z = g * (x[0] * params.w0 + x[1] * params.w1) + params.b
    p, q = phi(z)
    f = c * jnp.dot(params.a, p) + params.beta
    r = lr * 2.0 * (f - y)  # lr * dL/df
    back = (r * c) * params.a * q  # lr * dL/dz_j
    return Params(
        params.w0 - g * x[0] * back,
        params.w1 - g * x[1] * back,
        params.b - back,
        params.a - (r * c) * p,
        params.beta - r,
    ), f


def epoch_step(slot: Slot, state: State, *, kind: str, lr: float, frequency: float) -> State:
    """One epoch: n SGD steps in a fresh random order; halts at the next recorded epoch."""
    X, y = slot.data.X, slot.data.y
    n = X.shape[0]
    phi = activation(kind, frequency)
    order = jax.random.permutation(jax.random.fold_in(slot.data.order_key, state.epoch), n)

    def body(i, carry):
        params, bad = carry
        j = order[i]
        params, f = sgd_step(params, X[j], y[j], lr, phi)
        return params, bad | ~jnp.isfinite(f)

    params, bad = jax.lax.fori_loop(0, n, body, (state.params, state.diverged))
    epoch = state.epoch + 1
    rec_epochs = slot.data.rec_epochs
    at = epoch == rec_epochs[jnp.minimum(state.rec, rec_epochs.shape[0] - 1)]
    return State(params, epoch, state.steps + n, at | bad, state.rec, bad)


def init(key, shape, *, protocol: Protocol, dtype) -> Slot:
    """One run of a seed: its data, test set, order key and initialisation (shape: the bucket,
    the activation; it does not enter the draws)."""
    n, M, d = protocol.n, protocol.width, 2
    k_data, k_noise, k_test, k_test_noise, k_init, k_order = jax.random.split(key, 6)
    sd = math.sqrt(protocol.noise_var)

    def circle(k, m):
        u = jax.random.normal(k, (m, d), dtype)
        return u / jnp.linalg.norm(u, axis=1, keepdims=True)

    X, X_test = circle(k_data, n), circle(k_test, protocol.n_test)
    y = X[:, 0] + sd * jax.random.normal(k_noise, (n,), dtype)
    y_test = X_test[:, 0] + sd * jax.random.normal(k_test_noise, (protocol.n_test,), dtype)
    kw, ka = jax.random.split(k_init)
    W = jax.random.normal(kw, (M, d), dtype)
    a = jax.random.normal(ka, (M,), dtype)
    zeros = jnp.zeros((2 * M,), dtype)
    params = Params(
        jnp.concatenate([W[:, 0], W[:, 0]]),
        jnp.concatenate([W[:, 1], W[:, 1]]),
        zeros,
        jnp.concatenate([a, -a]),
        jnp.zeros((), dtype),
    )
    rec = jnp.asarray(record_epochs(protocol.epochs, protocol.records), jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    state = State(params, zero, zero, jnp.asarray(rec[0] == 0), zero, jnp.zeros((), bool))
    return Slot(state, Data(X, y, X_test, y_test, k_order, rec, _Static(shape)))


def predict(params: Params, X_mxd, kind: str, frequency: float, block: int = 2048):
    """The net on many points, in blocks of `block` points (the (m, 2M) pre-activations of
    10,000 points would be 800 MB)."""
    phi = activation(kind, frequency)
    m = X_mxd.shape[0]
    block = min(block, m)
    pad = -m % block
    Xp = jnp.pad(X_mxd, ((0, pad), (0, 0))).reshape(-1, block, 2)
    out = jax.lax.map(lambda Xb: forward(params, Xb, phi), Xp)
    return out.reshape(-1)[:m]


def _rmse(f, y):
    return jnp.sqrt(jnp.mean((f - y) ** 2))


def _programs(protocol: Protocol):
    """The report's device programs (one run each): the curve's measurement, and the last
    epoch's (all test points, the signal network, the circle)."""
    n_curve = min(protocol.n_curve, protocol.n_test)
    angles = jnp.linspace(-math.pi, math.pi, CIRCLE_POINTS, endpoint=False)
    circle = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)

    def curve(kind, params, X, y, X_test, y_test):
        f_train = predict(params, X, kind, protocol.frequency)
        f_test = predict(params, X_test[:n_curve], kind, protocol.frequency)
        return _rmse(f_train, y), _rmse(f_test, y_test[:n_curve])

    def last(kind, params, X, y, X_test, y_test):
        f_train = predict(params, X, kind, protocol.frequency)
        f_test = predict(params, X_test, kind, protocol.frequency)
        on_circle = predict(params, circle.astype(X.dtype), kind, protocol.frequency)
        if kind == "relu":  # the signal network of a ReLU network is the network itself
            return (
                _rmse(f_train, y),
                _rmse(f_test, y_test),
                _rmse(f_test, y_test),
                on_circle,
                on_circle,
            )
        s_test = predict(params, X_test, "relu", protocol.frequency)
        s_circle = predict(params, circle.astype(X.dtype), "relu", protocol.frequency)
        return (
            _rmse(f_train, y),
            _rmse(f_test, y_test),
            _rmse(s_test, y_test),
            on_circle,
            s_circle,
        )

    return curve, last


def default_engine() -> _engine.Engine:
    """16 slots per CPU device: the training step alone ran at 1.08 / 0.69 / 0.93 / 0.97 / 1.38 /
    0.56 G neuron-steps/s (relu) and 0.54 / 0.53 / 0.55 / 0.57 / 0.74 / 0.58 (spiky-smooth) at
    1 / 2 / 4 / 8 / 16 / 32 networks per batch on the 2-core CPU (16 networks' parameters,
    5 MB, stay in its 32 MB L3 cache; `benchmarks/spiky_net.py --slots`). Epochs between host
    checks: 16, so a run halts for its next record within 16 epochs of it."""
    return (
        _engine.Engine(slots=16, chunk=16)
        if jax.default_backend() == "cpu"
        else _engine.Engine(chunk=16)
    )


def experiment(protocol: Protocol = Protocol(), cells: Sequence[Cell] = ()) -> _engine.Experiment:
    """The spiky-net experiment under `protocol` as the engine's `Experiment` (cells: Cell(seed,
    activation); the keys fold in the seed only, so both activations of a seed share data,
    initialisation and SGD order)."""
    protocol.check()
    curve_fn, last_fn = _programs(protocol)
    last_epoch = record_epochs(protocol.epochs, protocol.records)[-1]

    def inputs(cs, keys, dtype):
        return np.asarray(keys), np.zeros((len(cs),), dtype)

    def init_(key, zero, kind):
        return init(key, kind, protocol=protocol, dtype=zero.dtype)

    def step(slot, state):
        return epoch_step(
            slot, state, kind=slot.data.kind.value, lr=protocol.lr, frequency=protocol.frequency
        )

    def programs(kind, shapes, B):
        one = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
            (shapes.state.params, *_measured(shapes.data)),
        )
        dt = shapes.data.X.dtype.name
        return {
            f"spiky-curve/{kind}/{dt}": _engine.Program(
                lambda *a: curve_fn(kind, *a), one, batched=False
            ),
            f"spiky-last/{kind}/{dt}": _engine.Program(
                lambda *a: last_fn(kind, *a), one, batched=False
            ),
        }

    def report(h):
        st = h.slots.state
        epochs = np.asarray(st.epoch)
        diverged = np.asarray(st.diverged)
        dt = h.slots.data.X.dtype.name
        out = []
        for s, cell in zip(h.index, h.cells):
            kind = cell.activation
            params, *data = _engine.take((st.params, *_measured(h.slots.data)), s)
            epoch, bad = int(epochs[s]), bool(diverged[s])
            final = bad or epoch >= last_epoch
            row = dict(
                seed=cell.seed,
                activation=kind,
                epoch=epoch,
                final=final,
                diverged=bad,
                signal_test_rmse=math.nan,
                circle="",
                signal_circle="",
                train_angle="",
                train_y="",
            )
            if final:
                tr, te, sig, on_c, s_c = h.programs[f"spiky-last/{kind}/{dt}"](params, *data)
                row.update(
                    train_rmse=float(tr),
                    test_rmse=float(te),
                    test_points=protocol.n_test,
                    signal_test_rmse=float(sig),
                )
                if cell.seed < protocol.circle_seeds:
                    X, y = (np.asarray(a, np.float64) for a in data[:2])
                    row.update(
                        circle=_text(on_c),
                        signal_circle=_text(s_c),
                        train_angle=_text(np.arctan2(X[:, 1], X[:, 0])),
                        train_y=_text(y),
                    )
            else:
                tr, te = h.programs[f"spiky-curve/{kind}/{dt}"](params, *data)
                row.update(
                    train_rmse=float(tr),
                    test_rmse=float(te),
                    test_points=min(protocol.n_curve, protocol.n_test),
                )
            out.append(_engine.Report([row], final))
        return out

    return _engine.Experiment(
        init=init_,
        step=step,
        report=report,
        schema=_engine.Schema(SCHEMA, KEYS, final="final", flags={"diverged": True}),
        protocol=protocol,
        seed=protocol.seed,
        batching=_engine.Batching(
            shape=lambda c: c.activation,
            resume=resume,
            programs=programs,
            step_flops=lambda b, c: _flops(b, protocol),
        ),
        cells=_engine.Cells(
            coords=lambda c: np.asarray([c.seed], np.uint32),
            inputs=inputs,
            example_cell=lambda kind: Cell(0, kind),
        ),
    )


def _measured(data: Data) -> tuple:
    """What the report's programs read of a slot's data."""
    return data.X, data.y, data.X_test, data.y_test


def resume(slot: Slot) -> Slot:
    """Go on after a recorded epoch: the next record is due."""
    st = slot.state
    return slot._replace(state=st._replace(done=jnp.zeros((), bool), rec=st.rec + 1))


def _flops(kind: str, protocol: Protocol) -> float:
    """Rough FLOPs of one epoch (n steps over 2M neurons): ~20 per neuron and step, and the
    sine and cosine of the spiky-smooth activation counted as 10 each."""
    per = 20 + (20 if kind == "spiky-smooth" else 0)
    return float(per * 2 * protocol.width * protocol.n)


def _text(values) -> str:
    """A vector as space-separated numbers (a CSV field without quotes)."""
    return " ".join(f"{float(v):.6g}" for v in np.asarray(values).ravel())
