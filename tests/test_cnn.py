"""The CNN experiment (Kou et al. 2023): the Gram-path step against a NumPy transcription of the
published PyTorch module and against autodiff of the paper's formula, the projected test-error
estimator against the direct d-dimensional one, the data model, and the command line."""

import csv
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbof.experiments.cnn import program as P
from jaxbof.experiments.cnn.cells import Cell, Protocol, activation_q


def _slot(cell, protocol, dtype=jnp.float64):
    keys = P.cell_keys(jax.random.PRNGKey(protocol.seed), jnp.asarray(P.coords(cell)))
    inp = P.Inputs(keys, jnp.int32(cell.d), jnp.zeros((), dtype))
    sh = P.Shape(cell.n, P.d_pad(cell.d))
    return P.prepare(inp, sh, protocol), keys, sh


def _net(st, i=0):
    return P.Net(st.alpha[i], st.beta[i], st.b[i])


def _explicit(cell, protocol, keys, sh, st, i=0):
    """The d-dimensional quantities of network i (||mu|| = protocol.signals[i]):
    W = W_0 + alpha mu^T + beta Xi, the data, mu."""
    y_clean, y, Xi, W0, _ = P.sample(
        keys, jnp.int32(cell.d), cell.n, sh.d_pad, protocol, jnp.float64
    )
    mu = np.zeros(sh.d_pad)
    mu[0] = protocol.signals[i]
    W = np.asarray(W0) + np.outer(st.alpha[i], mu) + np.asarray(st.beta[i]) @ np.asarray(Xi)
    return (
        np.asarray(y_clean),
        np.asarray(y),
        np.asarray(Xi)[:, : cell.d],
        W[:, : cell.d],
        mu[: cell.d],
    )


def _torch_transcription(W, b, x_patches, labels01, m):
    """The published LinearCNN in NumPy (float64): Conv1d(1, 2m, d, stride d) with bias, ReLU,
    mean over the 2 patches, logits (sum of filters 0..m-1, sum of m..2m-1), mean cross-entropy;
    its loss and the gradients of the loss in W and b (backpropagation by hand)."""
    n = x_patches.shape[0]
    pre = np.einsum("jd,ipd->ijp", W, x_patches) + b[None, :, None]  # [n, 2m, 2]
    h = np.maximum(pre, 0).mean(axis=2)  # [n, 2m]
    logits = np.stack([h[:, :m].sum(1), h[:, m:].sum(1)], axis=1)
    z = logits - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.mean(np.log(prob[np.arange(n), labels01]))
    dlogits = (prob - np.eye(2)[labels01]) / n  # [n, 2]
    dh = np.concatenate([np.repeat(dlogits[:, :1], m, 1), np.repeat(dlogits[:, 1:], m, 1)], 1)
    dpre = (pre > 0) * dh[:, :, None] / 2
    return loss, np.einsum("ijp,ipd->jd", dpre, x_patches), dpre.sum(axis=(0, 2))


def test_published_code_step_equals_the_pytorch_module_transcribed():
    """One GD step on the coefficients (alpha, beta, b) equals one step of the published module
    on the explicit d-dimensional weights: loss, weights and biases, float64."""
    protocol = Protocol(signals=(0.0, 1.5), filters=3, noise_rate=0.2, lr=0.3)
    cell = Cell(5, 7, 0)
    slot, keys, sh = _slot(cell, protocol)
    st1 = P.step(slot, slot.state, protocol)
    y_clean, y, Xi, W0, mu = _explicit(cell, protocol, keys, sh, slot.state, 1)
    b0 = np.asarray(slot.state.b[1])
    x = np.stack([y_clean[:, None] * mu[None, :], Xi], axis=1)  # [n, 2 patches, d]
    loss, gW, gb = _torch_transcription(W0, b0, x, (y > 0).astype(int), protocol.filters)
    fw = P.forward(P.one(slot.data, 1.5), _net(slot.state, 1), protocol)
    assert float(jnp.mean(jax.nn.softplus(-slot.data.y * fw.f))) == pytest.approx(loss, rel=1e-12)
    *_, W1, _ = _explicit(cell, protocol, keys, sh, st1, 1)
    np.testing.assert_allclose(W1, W0 - protocol.lr * gW, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(st1.b[1], b0 - protocol.lr * gb, rtol=1e-10, atol=1e-13)
    bound = 1 / math.sqrt(cell.d)  # PyTorch's Conv1d init
    assert np.all(np.abs(W0) <= bound) and np.all(np.abs(b0) <= bound)


@pytest.mark.parametrize("q", [1.0, 3.0])
def test_paper_step_equals_autodiff_of_the_formula(q):
    """Paper variant: f = (1/m) sum_j s_j sum_p act(<w_j, x^(p)>), no bias, mean logistic loss;
    the Gram-path step equals GD with jax.grad on the explicit weights (ReLU and ReLU^3)."""
    protocol = Protocol(
        signals=(2.0,), filters=2, variant="paper", q=q, sigma_0=0.3, lr=0.5, noise_rate=0.0
    )
    cell = Cell(6, 9, 3)
    slot, keys, sh = _slot(cell, protocol)
    y_clean, y, Xi, W0, mu = _explicit(cell, protocol, keys, sh, slot.state)
    m = protocol.filters
    s = np.where(np.arange(2 * m) < m, -1.0, 1.0)

    def loss(W):
        pre = jnp.stack([(y_clean[:, None] * mu[None, :]) @ W.T, Xi @ W.T])  # [2, n, 2m]
        f = (jnp.maximum(pre, 0) ** q).sum(0) @ s / m
        return jnp.mean(jnp.log1p(jnp.exp(-y * f)))

    W1_ref = W0 - protocol.lr * np.asarray(jax.grad(loss)(jnp.asarray(W0)))
    st1 = P.step(slot, slot.state, protocol)
    *_, W1, _ = _explicit(cell, protocol, keys, sh, st1)
    np.testing.assert_allclose(W1, W1_ref, rtol=1e-10, atol=1e-13)
    assert np.all(st1.b == 0)


def test_paper_noise_is_orthogonal_to_mu_and_labels_flip_at_rate_p():
    protocol = Protocol(variant="paper", noise_rate=0.3)
    _, keys, sh = _slot(Cell(4000, 6, 0), protocol)
    y_clean, y, Xi, _, _ = P.sample(keys, jnp.int32(6), 4000, sh.d_pad, protocol, jnp.float64)
    assert np.all(np.asarray(Xi)[:, 0] == 0) and np.all(np.asarray(Xi)[:, 6:] == 0)
    flips = np.mean(np.asarray(y) != np.asarray(y_clean))
    assert abs(flips - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)
    assert abs(np.mean(np.asarray(y_clean) > 0) - 0.5) < 4 * math.sqrt(0.25 / 4000)
    pub = Protocol(noise_rate=0.3)
    _, _, Xi_pub, _, _ = P.sample(keys, jnp.int32(6), 4000, sh.d_pad, pub, jnp.float64)
    assert np.std(np.asarray(Xi_pub)[:, 0]) == pytest.approx(1.0, rel=0.05)  # not projected


@pytest.mark.parametrize("variant", ["published-code", "paper"])
def test_projected_test_error_agrees_with_the_direct_estimator(variant):
    """After training, the test error from 2m-dimensional filter projections and from
    d-dimensional test patches have the same mean: over 60 test sets of 300 points each, the
    two means agree within 3 standard errors of their difference."""
    protocol = Protocol(signals=(1.2,), filters=4, variant=variant, n_test=300, noise_rate=0.1)
    cell = Cell(12, 40, 1)
    slot, keys, sh = _slot(cell, protocol)
    st = slot.state
    for _ in range(60):
        st = P.step(slot, st, protocol)
    slot = slot._replace(state=st)
    _, _, _, W, mu = _explicit(cell, protocol, keys, sh, st)
    m2 = 2 * protocol.filters
    sgn = np.where(np.arange(m2) < m2 // 2, -1.0, 1.0)
    c = 0.5 if variant == "published-code" else 1 / protocol.filters
    b = np.asarray(st.b[0])
    proj, direct = [], []
    rng = np.random.default_rng(0)
    for t in range(60):
        key = jax.random.fold_in(jax.random.PRNGKey(7), t)
        tried = slot._replace(data=slot.data._replace(test_key=key))
        proj.append(int(P.measure(tried, protocol).test_mistakes[0]) / protocol.n_test)
        yc = rng.choice([-1.0, 1.0], protocol.n_test)
        yo = np.where(rng.random(protocol.n_test) < protocol.noise_rate, -yc, yc)
        xi = protocol.sigma_p * rng.standard_normal((protocol.n_test, cell.d))
        if variant == "paper":
            xi[:, 0] = 0
        f = c * ((np.maximum(np.outer(yc, W @ mu) + b, 0) + np.maximum(xi @ W.T + b, 0)) @ sgn)
        direct.append(np.mean(np.where(f > 0, 1.0, -1.0) != yo))
    gap = np.mean(proj) - np.mean(direct)
    se = math.sqrt(np.var(proj, ddof=1) / 60 + np.var(direct, ddof=1) / 60)
    assert 0.1 < np.mean(direct) < 0.5  # a regime where the estimate is not trivially 0 or p
    assert abs(gap) < 3 * se, (np.mean(proj), np.mean(direct), se)


def test_same_key_same_rows_and_padding_never_changes_a_cell():
    """A cell's rows are the same alone (sampled at its own padded d) and inside a larger
    sweep (sampled at the largest d, other cells in its batch), and again on a rerun; the
    final row comes last; the sweep has a row per (cell, ||mu||)."""
    protocol = Protocol(signals=(0.0, 2.5, 1.0), filters=3, n_test=200, steps=30)
    cells = [Cell(8, d, k) for d in (20, 300) for k in range(3)]
    rows, stats = P.run_cells(cells, protocol, P._engine.Engine(slots=2))
    alone, _ = P.run_cells([cells[1]], protocol, P._engine.Engine(slots=2))
    again, _ = P.run_cells(cells, protocol, P._engine.Engine(slots=2))
    assert stats.models == 6 and len(rows) == 18
    mine = [r for r in rows if (r["d"], r["seed"]) == (20, 1)]
    assert [repr(r) for r in alone] == [repr(r) for r in mine]
    assert [r["signal"] for r in alone] == [0.0, 1.0, 2.5]  # the final one (largest) last
    assert [r["final"] for r in alone] == [False, False, True]
    assert sorted(map(repr, again)) == sorted(map(repr, rows))
    assert all(r["steps"] == 30 and not r["diverged"] for r in rows)
    zero = [r for r in rows if r["signal"] == 0]
    assert all(r["signal_learning"] == 0 for r in zero)  # no signal, nothing to learn


def test_activation_and_protocol_errors_name_the_bad_value():
    assert activation_q("relu") == 1 and activation_q("relu^3") == 3
    for bad in ("relu^2", "relu^1.5", "tanh", "relu^x"):
        with pytest.raises(ValueError, match="relu or relu\\^q with q > 2"):
            activation_q(bad)
    with pytest.raises(ValueError, match="noise_rate=0.5 must be in \\[0, 0.5\\)"):
        Protocol(noise_rate=0.5)
    with pytest.raises(ValueError, match="variant='torch' is not one of published-code, paper"):
        Protocol(variant="torch")


def _cli(args, tmp_path, devices=1):
    env = {
        **os.environ,
        "JAX_NUM_CPU_DEVICES": str(devices),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "jaxbof.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_cli_sweep_pinned_names_on_one_and_two_devices_and_plot(tmp_path):
    """The pinned flags of `jaxbof sweep cnn`, at tiny size: results.csv with the pinned
    columns, rows bit for bit equal on 1 and 2 devices, the figures drawn."""
    rows = {}
    for devices in (1, 2):
        out = tmp_path / f"cnn{devices}"
        proc = _cli(
            [
                "sweep",
                "cnn",
                "--n",
                "10",
                "--d",
                "30,60",
                "--signal",
                "0:3:1.5",
                "--seeds",
                "2",
                "--filters",
                "3",
                "--sigma-p",
                "1",
                "--noise-rate",
                "0.1",
                "--activation",
                "relu",
                "--variant",
                "published-code",
                "--lr",
                "0.1",
                "--steps",
                "20",
                "--n-test",
                "100",
                "--out",
                str(out),
                "--no-progress",
            ]
            + (["--no-plots"] if devices == 2 else []),
            tmp_path,
            devices,
        )
        assert proc.returncode == 0, proc.stderr
        with open(out / "results.csv") as f:
            reader = csv.DictReader(f)
            assert {"n", "d", "signal", "seed", "test_error"} <= set(reader.fieldnames)
            rows[devices] = sorted(map(tuple, (r.values() for r in reader)))
        assert len(rows[devices]) == 2 * 3 * 2
    assert rows[1] == rows[2]
    drawn = sorted(p.name for p in (tmp_path / "cnn1").glob("*.png"))
    assert {
        "test_error.png",
        "train_loss.png",
        "signal_vs_noise.png",
        "error_vs_signal.png",
    } <= set(drawn)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--n", "-3"], "n=-3"),
        (["--noise-rate", "0.5"], "noise_rate=0.5 must be in [0, 0.5)"),
        (["--activation", "relu^2"], "q > 2"),
        (["--variant", "torch"], "'torch' is not one of published-code, paper"),
        (["--d", "0"], "d=0"),
        (["--signal", "-1"], "signal=-1.0: ||mu|| must be finite and >= 0"),
        (["--signal", "1,1"], "each once"),
        (["--optimizer", "adam:1e-3"], "--optimizer does not apply to cnn"),
    ],
)
def test_bad_flags_exit_2_in_one_line(args, needle, capsys):
    from jaxbof import cli

    assert cli.main(["sweep", "cnn", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxbof: error:") and needle in err, err


def test_reproduce_kou_cnn_quick_as_a_user_runs_it(tmp_path, capsys):
    """The quick preset with its defaults: 30 training sets x 20 ||mu|| = 600 networks, the
    table with the fitted boundary, the four figures; the test error falls from chance at
    ||mu|| = 0 to below p + 0.1 at the largest ||mu||, every noisy label (almost) fitted."""
    from jaxbof import cli, stats, store

    out = tmp_path / "kou"
    assert cli.main(["reproduce", "kou-cnn", "--quick", "--out", str(out), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("n,d,crossing_signal_at_0.3,C") and "# boundary n ||mu||^4" in table
    rows = store.load_results(out)
    assert len(rows) == 600 and not any(r["diverged"] for r in rows)
    assert max(r["train_error"] for r in rows) <= 0.05
    agg = stats.aggregate(rows, by="signal", value="test_error")
    assert abs(agg[0.0].mean - 0.5) < 3 * agg[0.0].sem + 0.01
    assert agg[9.5].mean < 0.1 + 0.1
    assert {p.name for p in out.glob("*.png")} == {
        "test_error.png",
        "train_loss.png",
        "signal_vs_noise.png",
        "error_vs_signal.png",
    }
