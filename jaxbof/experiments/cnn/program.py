"""The CNN experiment (Kou et al., ICML 2023; Cao et al., NeurIPS 2022) as an `engine.Experiment`.

Data (Kou et al., Def. 3.1): mu = ||mu|| e_1; clean label y_hat = +-1
uniform; observed label y = y_hat flipped with probability p; x = (y_hat mu, xi), xi ~
N(0, sigma_p^2 I) (published code) or N(0, sigma_p^2 (I - e_1 e_1^T)) (paper: orthogonal to mu).
Network: f(W, x) = sum_j s_j c sum_{patches} act(<w_j, x^(p)> + b_j) over 2m filters, s_j = -1
for the first m (PyTorch's class 0) and +1 for the rest; c = 1/2 (published code: mean over the
2 patches, filters summed) or 1/m (paper); act(z) = max(0, z)^q (q = 1: ReLU). Loss: mean
logistic loss log(1 + exp(-y f)) (the published two-logit cross-entropy is the same function of
f). Full-batch GD with step lr for a fixed number of steps.

Gram path. Every gradient of a filter is a combination of mu and the training noise patches, so
W_t = W_0 + alpha_t mu^T + beta_t Xi exactly (GD is linear in the gradients). With mu = ||mu|| e_1
the step needs only G = Xi Xi^T (n x n), P_0 = W_0 Xi^T (2m x n), v = Xi mu and W_0 mu, computed
once when the cell is prepared; a step then costs O(m n^2) whatever d is. Those products go
through fixed 128-column blocks accumulated in a fixed order, and every draw is per sample or
per filter with rows a prefix of longer rows (partitionable threefry), so a cell's numbers do not
depend on the padded d it is sampled at.

Test error (projected estimator). A test point needs only the projections <w_j, xi> of its noise
patch on the 2m filters, jointly Gaussian with covariance sigma_p^2 W W^T (the paper variant:
sigma_p^2 W (I - P_mu) W^T), which the Gram quantities give exactly; n_test draws of those 2m
numbers replace n_test draws of d. tests/test_cnn.py checks it against the direct estimator
with d-dimensional test patches.

Cells and keys: a cell (n, d, seed) is one training set, initialisation and set of test draws,
trained at every ||mu|| of the protocol at once (a leading signal axis S in the state): the S
networks share their random numbers (common random numbers along the signal axis, which sharpen
the comparison between neighbouring ||mu||; each network alone is an exact draw of the protocol),
and the random numbers, the d-dimensional products and the test draws are paid once per cell,
not once per network. Keys are fold_in of (d, seed); sample i comes from fold_in(key, i), so a
smaller n is a prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbof import engine as _engine
from jaxbof import optim, train
from jaxbof.experiments.cnn.cells import COLUMNS, COORDINATES, Cell, Protocol, check_cell, snr

BLOCK = 128  # columns per block of the padding-invariant Gram products (d pads to a multiple)


class Shape(NamedTuple):
    """A bucket is Shape(n, BLOCK): training never sees d. Every bucket of a sweep is sampled at
    Shape(n, d_pad) with d_pad the sweep's largest d rounded up to BLOCK (`prep_shapes`): one
    compiled sampler, exact for every smaller d (prefix draws, blocked Gram products)."""

    n: int
    d_pad: int


class Inputs(NamedTuple):
    keys: jax.Array  # [3, 2]: data, init, test
    d: jax.Array
    zero: jax.Array  # 0 in the sweep's float dtype (which the draws take)


class State(NamedTuple):
    """The S networks of a cell, one per ||mu||."""

    alpha: jax.Array  # [S, 2m] coefficients of mu in the filters
    beta: jax.Array  # [S, 2m, n] coefficients of the noise patches
    b: jax.Array  # [S, 2m] biases (zero and untrained in the paper variant)
    steps: jax.Array  # GD updates so far (every network of the cell takes the same steps)
    done: jax.Array
    diverged: jax.Array  # [S] a non-finite output appeared (that network stops moving)


class Data(NamedTuple):
    """One cell's training set and initialisation, through its Gram quantities only."""

    G: jax.Array  # [n, n] Xi Xi^T
    P0: jax.Array  # [2m, n] W_0 Xi^T
    S0: jax.Array  # [2m, 2m] W_0 W_0^T
    x0: jax.Array  # [n] Xi e_1 (v = Xi mu = ||mu|| x0)
    w0: jax.Array  # [2m] W_0 e_1
    signal: jax.Array  # [S] the ||mu|| values
    y_clean: jax.Array  # [n]
    y: jax.Array  # [n] observed labels
    test_key: jax.Array


class Slot(NamedTuple):
    data: Data
    state: State


class One(NamedTuple):
    """The Gram quantities of one network (one ||mu||): what forward and step read."""

    G: jax.Array
    P0: jax.Array
    S0: jax.Array
    v: jax.Array  # Xi mu
    q0: jax.Array  # W_0 mu
    mu2: jax.Array  # ||mu||^2
    y_clean: jax.Array
    y: jax.Array


class Net(NamedTuple):
    alpha: jax.Array
    beta: jax.Array
    b: jax.Array


def one(data: Data, signal) -> One:
    return One(
        data.G,
        data.P0,
        data.S0,
        signal * data.x0,
        signal * data.w0,
        signal**2,
        data.y_clean,
        data.y,
    )


def d_pad(d: int) -> int:
    return -(-d // BLOCK) * BLOCK


def coords(c: Cell) -> np.ndarray:
    return np.array([c.n, c.d, c.seed], np.uint32)


def cell_keys(base_key, c):
    """[3, 2] keys (data, init, test), each fold_in of (d, seed), not of n."""
    return jnp.stack(
        [
            jax.random.fold_in(jax.random.fold_in(k, c[1]), c[2])
            for k in jax.random.split(base_key, 3)
        ]
    )


def gram(A_rxd):
    """A A^T accumulated over fixed 128-column blocks in a fixed order: the same bits for
    every zero padding of the columns."""
    r, d = A_rxd.shape
    blocks = A_rxd.reshape(r, d // BLOCK, BLOCK)

    def body(k, acc):
        blk = blocks[:, k, :]
        return acc + blk @ blk.T

    return jax.lax.fori_loop(0, d // BLOCK, body, jnp.zeros((r, r), A_rxd.dtype))


def sample(keys, d, n: int, d_pad_: int, protocol: Protocol, dtype):
    """The d-dimensional draws of one cell, zero beyond column d: (y_clean [n], y [n],
    Xi [n, d_pad], W0 [2m, d_pad], b0 [2m]). Used by `prepare` and by the tests' direct
    reference; only their Gram quantities are kept."""
    data_key, init_key, _ = keys
    m2 = 2 * protocol.filters
    cols = jnp.arange(d_pad_) < d
    if protocol.variant == "paper":
        cols = cols & (jnp.arange(d_pad_) > 0)  # xi orthogonal to mu = ||mu|| e_1

    def point(i):
        k_y, k_flip, k_xi = jax.random.split(jax.random.fold_in(data_key, i), 3)
        y_clean = jnp.where(jax.random.bernoulli(k_y), 1.0, -1.0).astype(dtype)
        flip = jax.random.bernoulli(k_flip, protocol.noise_rate)
        xi = protocol.sigma_p * jax.random.normal(k_xi, (d_pad_,), dtype) * cols
        return y_clean, jnp.where(flip, -y_clean, y_clean), xi

    y_clean, y, Xi = jax.vmap(point)(jnp.arange(n))
    inside = jnp.arange(d_pad_) < d

    def filt(j):
        k_w, k_b = jax.random.split(jax.random.fold_in(init_key, j))
        if protocol.variant == "paper":
            return protocol.sigma_0 * jax.random.normal(k_w, (d_pad_,), dtype) * inside, jnp.zeros(
                (), dtype
            )
        bound = 1.0 / jnp.sqrt(d.astype(dtype))  # PyTorch's Conv1d default, fan_in = d
        w = jax.random.uniform(k_w, (d_pad_,), dtype, -bound, bound) * inside
        return w, jax.random.uniform(k_b, (), dtype, -bound, bound)

    W0, b0 = jax.vmap(filt)(jnp.arange(m2))
    return y_clean, y, Xi, W0, b0


def prepare(inp: Inputs, sh: Shape, protocol: Protocol) -> Slot:
    dtype = inp.zero.dtype
    y_clean, y, Xi, W0, b0 = sample(inp.keys, inp.d, sh.n, sh.d_pad, protocol, dtype)
    AA = gram(jnp.concatenate([Xi, W0]))
    n, m2, S = sh.n, 2 * protocol.filters, len(protocol.signals)
    data = Data(
        G=AA[:n, :n],
        P0=AA[n:, :n],
        S0=AA[n:, n:],
        x0=Xi[:, 0],
        w0=W0[:, 0],
        signal=jnp.asarray(protocol.signals, dtype),
        y_clean=y_clean,
        y=y,
        test_key=inp.keys[2],
    )
    state = State(
        alpha=jnp.zeros((S, m2), dtype),
        beta=jnp.zeros((S, m2, n), dtype),
        b=jnp.broadcast_to(b0, (S, m2)),
        steps=jnp.zeros((), jnp.int32),
        done=jnp.zeros((), bool),
        diverged=jnp.zeros((S,), bool),
    )
    return Slot(data, state)


class Forward(NamedTuple):
    s: jax.Array  # [2m] <w_j, mu>
    N: jax.Array  # [2m, n] <w_j, xi_i>
    sig: jax.Array  # [2m, n] pre-activations on the signal patches
    noi: jax.Array  # [2m, n] on the noise patches
    f: jax.Array  # [n] network outputs


def _signs(m2: int, dtype):
    return jnp.where(jnp.arange(m2) < m2 // 2, -1.0, 1.0).astype(dtype)


def _scale(protocol: Protocol) -> float:
    return 0.5 if protocol.variant == "published-code" else 1.0 / protocol.filters


def act(z, q: float):
    r = jnp.maximum(z, 0.0)
    return r if q == 1 else r**q


def act_grad(z, q: float):
    """d act / dz, with the ReLU's derivative 0 at 0 (PyTorch's)."""
    if q == 1:
        return (z > 0).astype(z.dtype)
    return q * jnp.maximum(z, 0.0) ** (q - 1)


def forward(o: One, net: Net, protocol: Protocol) -> Forward:
    """One network's pre-activations and outputs on the training set."""
    s = o.q0 + net.alpha * o.mu2 + net.beta @ o.v
    N = o.P0 + net.alpha[:, None] * o.v[None, :] + net.beta @ o.G
    sig = o.y_clean[None, :] * s[:, None] + net.b[:, None]
    noi = N + net.b[:, None]
    w = _scale(protocol) * _signs(net.b.shape[0], net.b.dtype)
    f = w @ (act(sig, protocol.q) + act(noi, protocol.q))
    return Forward(s, N, sig, noi, f)


def gradients(o: One, net: Net, protocol: Protocol) -> tuple[Net, jax.Array]:
    """(the mean logistic loss's gradient in the coefficients (alpha, beta, b), outputs f):
    dL/dW = dalpha mu^T + dbeta Xi, so GD on the coefficients is GD on the filters."""
    fw = forward(o, net, protocol)
    n = o.y.shape[0]
    g = -o.y * jax.nn.sigmoid(-o.y * fw.f) / n  # dL/df_i
    w = (_scale(protocol) * _signs(net.b.shape[0], net.b.dtype))[:, None] * g[None, :]
    dsig = act_grad(fw.sig, protocol.q) * w  # dL/d(pre-activation), [2m, n]
    dnoi = act_grad(fw.noi, protocol.q) * w
    db = (
        jnp.sum(dsig + dnoi, axis=1)
        if protocol.variant == "published-code"
        else jnp.zeros_like(net.b)
    )  # the paper's network has no bias
    return Net(dsig @ o.y_clean, dnoi, db), fw.f


class _Run(NamedTuple):
    """One network's part of the step skeleton (`train.step`): its coefficients, its diverged
    flag and the update rule's state (empty for GD)."""

    net: Net
    diverged: jax.Array
    opt: object


def step(slot: Slot, st: State, protocol: Protocol) -> State:
    """One GD step of every network of the cell (`train.step` with plain GD on the coefficients,
    exact: GD is linear in the gradients), or a halt after `steps` updates. A network whose
    outputs turn non-finite stops moving (diverged); a halted state is unchanged."""
    halt = st.done | (st.steps >= protocol.steps)

    def per_signal(signal, alpha, beta, b, diverged):
        o = one(slot.data, signal)

        def check(_, run: _Run) -> train.Check:
            grads, f = gradients(o, run.net, protocol)
            bad = ~jnp.all(jnp.isfinite(f))
            return train.Check(run.net, grads, halt | run.diverged | bad, bad)

        def advance(run: _Run, c: train.Check, net, opt) -> _Run:
            return _Run(net, run.diverged | (c.aux & ~halt), opt)

        lr = jnp.asarray(protocol.lr, alpha.dtype)
        net = Net(alpha, beta, b)  # GD keeps no state between steps: a fresh (empty) one
        run = _Run(net, diverged, optim.init(optim.GD, lr, net))
        new = train.step(check, advance, lambda _, c: lr, optim.GD)(None, run)
        return new.net, new.diverged

    new, diverged = jax.vmap(per_signal)(slot.data.signal, st.alpha, st.beta, st.b, st.diverged)
    return State(
        new.alpha,
        new.beta,
        new.b,
        st.steps + (~halt).astype(jnp.int32),
        halt | jnp.all(diverged),
        diverged,
    )


def cholesky(C):
    """Lower Cholesky factor of a 2m x 2m covariance in plain XLA ops (no library kernel, which
    the engine refuses on CPU); pivots clamped at the dtype's tiny, so a round-off-negative
    pivot gives a zero column instead of nan."""
    k = C.shape[0]
    idx = jnp.arange(k)

    def body(j, L):
        c = C[:, j] - L @ L[j, :]
        piv = jnp.sqrt(jnp.maximum(c[j], jnp.finfo(C.dtype).tiny))
        return L.at[:, j].set(jnp.where(idx > j, c / piv, jnp.where(idx == j, piv, 0.0)))

    return jax.lax.fori_loop(0, k, body, jnp.zeros_like(C))


def filter_covariance(o: One, net: Net, s, protocol: Protocol):
    """Covariance of the projections <w_j, xi> of a fresh noise patch: sigma_p^2 W W^T
    (published code) or sigma_p^2 W (I - mu mu^T / ||mu||^2) W^T (paper), from the Gram
    quantities: W = W_0 + alpha mu^T + beta Xi."""
    a, B = net.alpha, net.beta
    Bv = B @ o.v
    WWt = (
        o.S0
        + jnp.outer(o.q0, a)
        + jnp.outer(a, o.q0)
        + o.mu2 * jnp.outer(a, a)
        + o.P0 @ B.T
        + B @ o.P0.T
        + jnp.outer(a, Bv)
        + jnp.outer(Bv, a)
        + B @ o.G @ B.T
    )
    if protocol.variant == "paper":
        safe = jnp.where(o.mu2 > 0, o.mu2, 1.0)
        WWt = WWt - jnp.where(o.mu2 > 0, jnp.outer(s, s) / safe, 0.0)
    return protocol.sigma_p**2 * WWt


class Measures(NamedTuple):
    """Per network (leading signal axis S)."""

    train_loss: jax.Array
    train_mistakes: jax.Array  # counts (int32): the errors are counts / n, exactly
    test_mistakes: jax.Array
    clean_test_mistakes: jax.Array
    signal_learning: jax.Array
    noise_memorization: jax.Array


def measure(slot: Slot, protocol: Protocol) -> Measures:
    """The final measurements of a cell's S networks (device, one slot; the engine maps it
    over slots). The n_test test draws are shared by the S networks."""
    data, st = slot.data, slot.state
    m2 = st.b.shape[-1]
    sgn = _signs(m2, st.b.dtype)
    k_z, k_y, k_flip = jax.random.split(data.test_key, 3)
    z = jax.random.normal(k_z, (protocol.n_test, m2), st.b.dtype)
    yc = jnp.where(jax.random.bernoulli(k_y, shape=(protocol.n_test,)), 1.0, -1.0)
    yo = jnp.where(
        jax.random.bernoulli(k_flip, protocol.noise_rate, (protocol.n_test,)), -yc, yc
    ).astype(st.b.dtype)
    yc = yc.astype(st.b.dtype)

    def per_signal(signal, alpha, beta, b):
        o, net = one(data, signal), Net(alpha, beta, b)
        fw = forward(o, net, protocol)
        pred = jnp.where(fw.f > 0, 1.0, -1.0)  # argmax of the two logits; a tie is class -1
        own = sgn[:, None] == o.y[None, :]  # the filters of each sample's observed label
        L = cholesky(filter_covariance(o, net, fw.s, protocol))
        w = _scale(protocol) * sgn
        # the signal patch's part of f for a clean label of +1 and of -1
        f_sig = jnp.stack([act(fw.s + b, protocol.q) @ w, act(-fw.s + b, protocol.q) @ w])
        return (
            Measures(
                jnp.mean(jax.nn.softplus(-o.y * fw.f)),
                jnp.sum(pred != o.y, dtype=jnp.int32),
                None,
                None,
                jnp.max(sgn * fw.s),
                jnp.mean(jnp.max(jnp.where(own, jnp.abs(fw.N), -jnp.inf), axis=0)),
            ),
            L,
            f_sig,
        )

    m, L, f_sig = jax.vmap(per_signal)(data.signal, st.alpha, st.beta, st.b)
    S = L.shape[0]
    # projections of the test patches on every filter of every network, as one product:
    # [n_test, 2m] @ [2m, S * 2m] (L[s, j, k] at column s * 2m + j)
    U = (z @ L.transpose(2, 0, 1).reshape(m2, S * m2)).reshape(-1, S, m2)
    w = _scale(protocol) * sgn
    f_test = jnp.sum(act(U + st.b[None], protocol.q) * w, axis=-1)  # [n_test, S], fused
    f_test = f_test + jnp.where(yc[:, None] > 0, f_sig[None, :, 0], f_sig[None, :, 1])
    pred_t = jnp.where(f_test > 0, 1.0, -1.0)
    return m._replace(
        test_mistakes=jnp.sum(pred_t != yo[:, None], axis=0, dtype=jnp.int32),
        clean_test_mistakes=jnp.sum(pred_t != yc[:, None], axis=0, dtype=jnp.int32),
    )


def step_flops(b: Shape, cell: Cell | None, protocol: Protocol) -> float:
    m2, n, S = 2 * protocol.filters, b.n, len(protocol.signals)
    return S * (4.0 * m2 * n * n + 30.0 * m2 * n)


def experiment(protocol: Protocol = Protocol(), cells: Iterable[Cell] = ()) -> _engine.Experiment:
    """The CNN experiment under `protocol` as the engine's Experiment (cells: validated)."""
    for c in cells:
        if not isinstance(c, Cell):
            raise ValueError(f"cell {c!r} is not a cnn.Cell")
        check_cell(c)
    static = dataclasses.replace(protocol, seed=0)  # the seed is in the keys, not the programs
    signals = protocol.signals
    last = max(range(len(signals)), key=lambda i: signals[i])

    def shape(c: Cell) -> Shape:
        return Shape(c.n, BLOCK)  # its slots hold no d-sized array: d_pad only names it

    def prep_shapes(groups) -> dict:
        top = max(d_pad(c.d) for g in groups.values() for c in g)
        return {b: Shape(b.n, top) for b in groups}

    def inputs(cs, keys, dtype) -> Inputs:
        return Inputs(
            np.asarray(keys), np.array([c.d for c in cs], np.int32), np.zeros(len(cs), dtype)
        )

    def measure_name(b: Shape, dtype) -> str:
        return f"cnn_measure_{b.n}_{len(signals)}_{jnp.dtype(dtype).name}"

    def measure_(data, alpha, beta, b):  # only what it reads: jit drops unused arguments
        return measure(Slot(data, State(alpha, beta, b, None, None, None)), static)

    def programs(b: Shape, shapes: Slot, B: int):
        st = shapes.state
        return {
            measure_name(b, st.b.dtype): _engine.Program(
                jax.vmap(measure_), (shapes.data, st.alpha, st.beta, st.b)
            )
        }

    def report(b: Shape, slots: Slot, idx, cells_, progs):
        st = slots.state
        out = progs[measure_name(b, st.b.dtype)](slots.data, st.alpha, st.beta, st.b)
        vals = {k: np.asarray(v, np.float64) for k, v in out._asdict().items()}
        steps, div = np.asarray(st.steps), np.asarray(st.diverged)
        reports = []
        for s, c in zip(idx, cells_):
            rows = []
            for i, signal in enumerate(signals):
                rows.append(
                    {
                        "n": c.n,
                        "d": c.d,
                        "signal": signal,
                        "seed": c.seed,
                        "snr": snr(signal, c.d, protocol.sigma_p),
                        "steps": int(steps[s]),
                        "diverged": bool(div[s, i]),
                        "final": i == last,
                        "train_loss": float(vals["train_loss"][s, i]),
                        "train_error": float(vals["train_mistakes"][s, i]) / c.n,
                        "test_error": float(vals["test_mistakes"][s, i]) / protocol.n_test,
                        "clean_test_error": (
                            float(vals["clean_test_mistakes"][s, i]) / protocol.n_test
                        ),
                        "signal_learning": float(vals["signal_learning"][s, i]),
                        "noise_memorization": float(vals["noise_memorization"][s, i]),
                    }
                )
            rows.append(rows.pop(last))  # the final row last: a cut-short write is redone
            reports.append(_engine.Report(rows, True))
        return reports

    return _engine.Experiment(
        init=lambda inp, sh: prepare(inp, sh, static),
        step=lambda slot, st: step(slot, st, static),
        report=lambda h: report(h.bucket, h.slots, h.index, h.cells, h.programs),
        schema=_engine.Schema(dict(COLUMNS), COORDINATES, final="final", flags={"diverged": True}),
        protocol=static,
        seed=int(protocol.seed),
        batching=_engine.Batching(
            shape=shape,
            prep_shapes=prep_shapes,
            programs=programs,
            step_flops=lambda b, c: step_flops(b, c, static),
        ),
        cells=_engine.Cells(
            coords=coords,
            keys=cell_keys,
            cell_of=cell_of,
            example_cell=lambda b: Cell(b.n, b.d_pad, 0),
            inputs=lambda cs, keys, dtype: (inputs(cs, keys, dtype),),
        ),
    )


def cell_of(row: Mapping) -> Cell:
    return Cell(int(row["n"]), int(row["d"]), int(row["seed"]))


def default_engine() -> _engine.Engine:
    """Many cells per compiled batch: a network's step is a few small matrices (O(m n^2))."""
    return _engine.Engine(slots=64 if jax.default_backend() == "cpu" else 1024)


def run_cells(
    cells, protocol: Protocol = Protocol(), engine: _engine.Engine | None = None, dtype=jnp.float32
):
    """Train `cells` under `protocol`; returns (rows, stats) like engine.run."""
    cells = list(cells)
    return _engine.run(experiment(protocol, cells), cells, engine or default_engine(), dtype=dtype)
