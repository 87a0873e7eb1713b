"""Update rules through optax (jaxbof.optim) in both experiments.

References: the hand-written GD steps (train.gd_step, regression.gd_step), bit for bit; a
NumPy heavy-ball loop; the direct parameterization for the Gram one under momentum and
Nesterov; convergence of Adam on a separable problem and the max_steps flag when it cannot.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxbof import model, optim, stats, store
from jaxbof.cli import main
from jaxbof.experiments import regression as R
from jaxbof.experiments.classification import data
from jaxbof.experiments.classification import step as train
from jaxbof.experiments.classification.data import Corruption, Signal
from jaxbof.experiments.classification.grid import Cell, Protocol, choose_param
from jaxbof.experiments.classification.step import Hyper, Param, Stop
from jaxbof.model import Outer, TwoLayerParams

# ----------------------------------------------------------------------------- specifications


@pytest.mark.parametrize(
    "spec, canonical, linear",
    [
        ("sgd", "sgd", True),
        ("momentum:0.9", "momentum:0.9", True),
        ("nesterov:.5", "nesterov:0.5", True),
        ("adam:1e-3", "adam:0.001", False),
        ("adam:1e-3:0.9", "adam:0.001", False),
        ("adam:1e-3:0.8", "adam:0.001:0.8", False),
        ("ADAMW:1e-3:1e-2", "adamw:0.001:0.01", False),
        ("sign:1e-3", "sign:0.001", False),
        ("rmsprop:0.01", "rmsprop:0.01", False),
        ("adagrad:0.1", "adagrad:0.1", False),
    ],
)
def test_specs_are_canonical(spec, canonical, linear):
    opt = optim.parse(spec)
    assert opt.spec == canonical and opt.linear is linear
    assert optim.parse(canonical) is opt  # equal specs: one object, one compile
    assert store.jsonable({"o": opt}) == {"o": canonical}


@pytest.mark.parametrize(
    "spec, words",
    [
        ("", "empty"),
        ("lion:1e-3", "unknown rule 'lion'"),
        ("momentum", "momentum:BETA"),
        ("momentum:1.0", "beta=1.0 must be in [0, 1)"),
        ("adam:x", "lr 'x' is not a number"),
        ("adam:-1", "lr=-1 must be > 0"),
        ("sgd:0.1", "sgd takes sgd"),
        ("adam:nan", "> 0"),
        ("adamw:1e-3:-1", "wd=-1 must be >= 0"),
        ("adam:1:0.9:0.9:0.1:7", "5 value(s) given"),
    ],
)
def test_bad_specs_name_the_piece(spec, words):
    with pytest.raises(ValueError, match="optimizer") as e:
        optim.parse(spec)
    assert words in str(e.value)


def test_protocols_take_specs_transformations_and_refuse_gram_for_adam():
    assert Protocol().optimizer is optim.GD
    assert Protocol(optimizer="momentum:0.9").optimizer is optim.parse("momentum:0.9")
    tx = optax.adam(1e-2)
    custom = Protocol(optimizer=tx).optimizer
    assert custom.spec == "custom:custom" and not custom.linear and custom.make(0.1) is tx
    assert R.Protocol(optimizer="adam:1e-3").optimizer.spec == "adam:0.001"
    with pytest.raises(ValueError, match="GRAM needs an optimizer linear"):
        Protocol(param=Param.GRAM, optimizer="adam:1e-3")
    with pytest.raises(ValueError, match="expected"):
        Protocol(optimizer=3)
    # the engine's choice: Gram for d > n/2 only under a linear rule
    cell = Cell(20, 60, 3.0, 0.2, 0.1, 0.1, 8, 0)
    assert choose_param(cell, Protocol(optimizer="nesterov:0.9")) == Param.GRAM
    assert choose_param(cell, Protocol(optimizer="adam:1e-3")) == Param.DIRECT


@pytest.mark.parametrize(
    "spec, invariant",
    [
        ("sgd", True),
        ("momentum:0.9", True),
        ("nesterov:0.5", True),
        ("adam:1e-3", False),
        ("adamw:1e-3", False),
        ("sign:1e-3", False),
        ("rmsprop:1e-3", False),
        ("adagrad:0.1", False),
    ],
)
def test_rotation_invariance_is_a_property_of_the_rule(spec, invariant):
    assert optim.parse(spec).rotation_invariant is invariant


def test_custom_rules_are_rotation_invariant_only_if_declared():
    tx = optax.sgd(0.1)
    assert not optim.custom(tx).rotation_invariant  # unknown: not assumed
    assert optim.custom(tx, rotation_invariant=True).rotation_invariant
    assert optim.custom(lambda s: optax.sgd(s, momentum=0.5), linear=True).rotation_invariant
    with pytest.raises(ValueError, match="contradicts linear=True"):
        optim.custom(tx, linear=True, rotation_invariant=False)


# ----------------------------------------------------------------------------- classification


def _problem(seed=0, n=20, d=60, width=8, stop=Stop.ZERO_LOSS, max_steps=400, eta=None):
    dkey, wkey = jax.random.split(jax.random.PRNGKey(seed))
    td = data.sample_train(
        dkey, n, d, 0.2, 0.15, n_pad=n, d_pad=d, corruption=Corruption.EXACT, signal=Signal.RANDOM
    )
    W0 = model.init_weights(wkey, width, d, 1.0 / (width * np.sqrt(d)), d_pad=d)
    a = model.outer_weights(width, Outer.ALTERNATING, dtype=jnp.float64)
    hp = Hyper(
        jnp.asarray(0.1),
        jnp.asarray(1.0 / (width * n) if eta is None else eta),
        jnp.asarray(int(stop), jnp.int32),
        jnp.asarray(max_steps, jnp.int32),
    )
    direct = train.direct_problem(td.X_nxd, td.y_obs_n, td.mask_n, a, hp)
    gram = train.gram_problem(td.X_nxd, W0, td.y_obs_n, td.mask_n, a, hp)
    return td, W0, direct, gram


@jax.jit
def _gd_run(p, s):
    return jax.lax.while_loop(lambda s: ~s.done, lambda s: train.gd_step(p, s), s)


def test_sgd_through_optax_equals_the_hand_written_step_bit_for_bit():
    td, W0, direct, gram = _problem()
    for p in (direct, gram):
        s0 = train.init_state(p, W0)
        ref = _gd_run(p, s0)
        got, _ = jax.jit(train.run)(p, s0)
        assert bool(ref.converged) and int(ref.steps) > 10
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
            np.testing.assert_array_equal(a, b)


def _trajectory(p, s, optimizer, k):
    step = jax.jit(train.step, static_argnums=2)
    out = []
    for _ in range(k):
        s = step(p, s, optimizer)
        out.append(s)
    return out


def _weights(p, s, W0, X):
    return np.asarray(train.final_weights(p, s.theta, W0, X))


def test_momentum_direct_equals_numpy_heavy_ball():
    td, W0, direct, _ = _problem(1)
    beta, eta = 0.9, float(direct.hyper.eta)
    traj = _trajectory(
        direct,
        train.init_state(direct, W0, optim.parse("momentum:0.9")),
        optim.parse("momentum:0.9"),
        12,
    )
    X, y, a = (np.asarray(v) for v in (td.X_nxd, td.y_obs_n, direct.a_m))
    W, v = np.asarray(W0).copy(), np.zeros_like(np.asarray(W0))
    for s in traj:
        H = X @ W.T
        f = np.where(H >= 0, H, 0.1 * H) @ a
        g_n = np.where(y * f < 1, -y, 0.0)
        g = (g_n[:, None] * a[None, :] * np.where(H >= 0, 1.0, 0.1)).T @ X
        v = g + beta * v
        W = W - eta * v
        np.testing.assert_allclose(np.asarray(s.theta), W, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("spec", ["momentum:0.9", "nesterov:0.8"])
def test_gram_trajectory_equals_direct(spec):
    """W_0 + C_t X (Gram, the rule applied to the pseudo-gradient dH) equals W_t (direct) at
    every step, and both runs stop at the same step."""
    opt = optim.parse(spec)
    td, W0, direct, gram = _problem(2, stop=Stop.ZERO_ERROR, max_steps=5000)
    sd = train.init_state(direct, W0, opt)
    sg = train.init_state(gram, W0, opt)
    for a, b in zip(_trajectory(direct, sd, opt, 40), _trajectory(gram, sg, opt, 40)):
        np.testing.assert_allclose(
            _weights(gram, b, W0, td.X_nxd), np.asarray(a.theta), rtol=1e-10, atol=1e-14
        )
        np.testing.assert_allclose(b.f_n, a.f_n, rtol=1e-10, atol=1e-13)
    rd, _ = jax.jit(train.run, static_argnums=3)(direct, sd, None, opt)
    rg, _ = jax.jit(train.run, static_argnums=3)(gram, sg, None, opt)
    assert bool(rd.converged) and bool(rg.converged) and int(rd.steps) == int(rg.steps)
    np.testing.assert_allclose(_weights(gram, rg, W0, td.X_nxd), rd.theta, rtol=1e-9)
    with pytest.raises(ValueError, match="not linear"):
        train.init_state(gram, W0, optim.parse("adam:1e-3"))


def _orthogonal(d, seed=0):
    """A random orthogonal d x d matrix (QR of a Gaussian, signs fixed: Haar)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize(
    "spec, invariant",
    [
        ("sgd", True),
        ("momentum:0.9", True),
        ("nesterov:0.9", True),
        ("adam:1e-2", False),
        ("sign:1e-2", False),
    ],
)
def test_training_on_rotated_data_shows_which_rules_are_rotation_invariant(spec, invariant):
    """Train on (X, W_0) and on (X Q, W_0 Q), Q random orthogonal, direct parameterization:
    a rotation-invariant rule gives the same outputs f and W_t Q (so with the signal on e_1
    it stands for every direction); Adam and sign descent, per-coordinate, do not."""
    opt = optim.parse(spec)
    assert opt.rotation_invariant is invariant
    td, W0, direct, _ = _problem(4, n=8, d=16, width=4, max_steps=10_000)
    Q = jnp.asarray(_orthogonal(16))
    rotated = train.direct_problem(
        td.X_nxd @ Q, direct.y_n, direct.mask_n, direct.a_m, direct.hyper
    )
    k = 40
    a = _trajectory(direct, train.init_state(direct, W0, opt), opt, k)[-1]
    b = _trajectory(rotated, train.init_state(rotated, W0 @ Q, opt), opt, k)[-1]
    assert int(a.steps) >= 5  # a real trajectory (a fast rule may reach zero loss within k)
    f, f_rot = (np.asarray(train.final_outputs(p, s.theta)) for p, s in ((direct, a), (rotated, b)))
    W, W_back = np.asarray(a.theta), np.asarray(b.theta @ Q.T)
    moved = np.linalg.norm(W - np.asarray(W0))
    assert moved > 0.5 * np.linalg.norm(np.asarray(W0))  # the weights went somewhere
    if invariant:
        assert int(b.steps) == int(a.steps) and bool(b.converged) == bool(a.converged)
        np.testing.assert_allclose(f_rot, f, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(W_back, W, rtol=1e-10, atol=1e-13)
    else:
        # some 1e13 times the invariant rules' float error: a different trajectory
        assert np.max(np.abs(f_rot - f)) > 0.05 * np.max(np.abs(f))
        assert np.linalg.norm(W_back - W) > 0.3 * moved


def test_adam_converges_on_a_separable_problem_and_is_flagged_when_it_cannot():
    opt = optim.parse("adam:1e-3")
    _, W0, direct, _ = _problem(3, n=16, d=80, stop=Stop.ZERO_ERROR, max_steps=20_000)
    s, _ = jax.jit(train.run, static_argnums=3)(
        direct, train.init_state(direct, W0, opt), None, opt
    )
    assert bool(s.converged) and not bool(s.diverged) and int(s.steps) < 20_000
    f = np.asarray(train.final_outputs(direct, s.theta))
    assert np.all(np.sign(f) == np.asarray(direct.y_n))  # zero training error, measured anew
    # the same run cut at 2 steps: done, not converged, and flagged in the results
    short = direct._replace(hyper=direct.hyper._replace(max_steps=jnp.asarray(2, jnp.int32)))
    s2, _ = jax.jit(train.run, static_argnums=3)(short, train.init_state(short, W0, opt), None, opt)
    assert bool(s2.done) and not bool(s2.converged) and int(s2.steps) == 2
    row = {
        "converged": bool(s2.converged),
        "diverged": bool(s2.diverged),
        "test_error": 0.5,
        "n": 16,
        "d_over_n": 5.0,
    }
    assert stats.is_flagged(row)
    assert (
        stats.aggregate([row], by="n", value="test_error").popitem()[1].count == 0
    )  # never averaged in


def test_paired_differences_pair_by_cell_and_leave_flagged_out():
    def row(n, seed, err, ok=True):
        return dict(n=n, d_over_n=1.0, seed=seed, test_error=err, converged=ok, diverged=False)

    base = [row(10, 0, 0.2), row(10, 1, 0.3), row(20, 0, 0.1)]
    other = [row(10, 0, 0.25), row(10, 1, 0.2), row(20, 0, 0.4, ok=False), row(20, 1, 0.1)]
    d = stats.paired_differences(
        base, other, ("n", "seed"), by=("n", "d_over_n"), value="test_error"
    )
    assert d[(10, 1.0)].count == 2 and d[(10, 1.0)].flagged == 0
    np.testing.assert_allclose(d[(10, 1.0)].mean, (0.05 - 0.1) / 2)
    assert d[(20, 1.0)].count == 0 and d[(20, 1.0)].flagged == 2  # flagged, and unpaired
    # keys that do not tell two base runs apart (e.g. GD on e1 and on a random signal without
    # "signal" in the keys) are refused; the same run read twice is harmless
    twice = stats.paired_differences(
        base + base[:1], other, ("n", "seed"), by=("n", "d_over_n"), value="test_error"
    )
    assert twice[(10, 1.0)] == d[(10, 1.0)]
    with pytest.raises(ValueError, match="tell them apart"):
        stats.paired_differences(
            base + [row(10, 0, 0.9)], other, ("n", "seed"), by=("n", "d_over_n"), value="test_error"
        )


# ----------------------------------------------------------------------------- regression


def _reg_slot(opt=optim.GD, outer=False, bias=False, n=20, M=16, d=3, eta=0.1):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    xi = rng.normal(size=(2, d))
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    raw = TwoLayerParams(
        jnp.asarray(rng.normal(size=(M, d))),
        jnp.asarray(rng.choice([-1.0, 1.0], M)),
        jnp.asarray(rng.normal(size=M)) if bias else None,
    )
    Xt = jnp.asarray(X[:5])
    Yt = jnp.zeros((5, 2))
    rec = jnp.asarray([0, 100_000], jnp.int32)
    return R.data._finish(
        jnp.asarray(X),
        jnp.asarray(rng.uniform(-1, 1, n)),
        Xt,
        Yt,
        jnp.asarray(xi),
        raw,
        jnp.asarray(eta),
        jnp.asarray(0.3),
        jnp.asarray(False),
        jnp.asarray(True),
        jnp.asarray([0.5, 0.7]),
        rec,
        R.Shape(n, d, M, bias, outer),
        (1, 2),
        opt,
    )


def _reg_steps(step, slot, k):
    st = R.resume_slot(slot).state  # past the record at step 0
    f = jax.jit(step)
    for _ in range(k):
        st = f(slot, st)
    return st


@pytest.mark.parametrize("outer, bias", [(False, False), (True, True)])
def test_regression_sgd_through_optax_equals_gd_step_bit_for_bit(outer, bias):
    slot = _reg_slot(outer=outer, bias=bias)
    a = _reg_steps(R.gd_step, slot, 30)
    b = _reg_steps(lambda s, st: R.train_step(s, st, optim.GD), slot, 30)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert int(b.steps) == 30


def test_regression_rules_train_only_the_trained_layers_and_adam_fits():
    adam = optim.parse("adam:1e-2")
    slot = _reg_slot(adam)
    st = _reg_steps(lambda s, st: R.train_step(s, st, adam), slot, 400)
    np.testing.assert_array_equal(st.a, slot.state.a)  # a frozen without train_outer
    assert int(st.opt[0].count) == 400  # Adam's own step counter moved with the run
    risk = lambda s: float(
        np.mean(
            (
                R.forward(
                    TwoLayerParams(s.W, s.a, s.b),
                    slot.data.X,
                )[2]
                - slot.data.y
            )
            ** 2
        )
    )
    assert risk(st) < 0.2 * risk(slot.state)
    both = _reg_slot(optim.parse("momentum:0.9"), outer=True)
    st2 = _reg_steps(lambda s, st: R.train_step(s, st, optim.parse("momentum:0.9")), both, 5)
    assert not np.array_equal(st2.a, both.state.a)  # a trained with train_outer
    # a halted state and its rule's state stay put
    halted = st._replace(done=jnp.asarray(True))
    again = jax.jit(lambda s, st: R.train_step(s, st, adam))(slot, halted)
    for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(halted)):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------- CLI


SWEEP = [
    "sweep",
    "classification",
    "--n",
    "10",
    "--d-over-n",
    "3",
    "--seeds",
    "1",
    "--width",
    "4",
    "--n-test",
    "50",
    "--no-plots",
    "--no-progress",
    "--no-compile-cache",
]


def test_cli_records_the_optimizer_and_refuses_another_in_the_same_out(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(SWEEP + ["--out", str(out), "--optimizer", "nesterov:0.5", "--x64"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["experiment"]["protocol"]["optimizer"] == "nesterov:0.5"
    rows = store.load_results(out)
    assert len(rows) == 1 and rows[0]["param"] == "gram" and rows[0]["converged"]
    capsys.readouterr()
    assert main(SWEEP + ["--out", str(out), "--optimizer", "adam:1e-3", "--x64"]) == 2
    err = capsys.readouterr().err
    assert "optimizer" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, words",
    [
        (SWEEP + ["--optimizer", "adam:fast"], "--optimizer: optimizer 'adam:fast': lr 'fast'"),
        (SWEEP + ["--optimizer", "lion"], "unknown rule 'lion'"),
        (["reproduce", "ntk-concentration", "--optimizer", "sgd"], "does not apply"),
        (["reproduce", "optimizers", "--optimizer", "adam:1e-3"], "does not apply"),
    ],
)
def test_cli_bad_optimizer_exits_2_in_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- the study


def _write_part(root, kind, spec, rows, columns, signal=None):
    from jaxbof.experiments import optimizers as O

    with store.ResultsWriter(
        root / O.subdir(kind, spec, signal), {"experiment": {"kind": kind}}, columns
    ) as w:
        w.write(rows)


def test_study_runs_the_random_signal_for_rules_that_are_not_rotation_invariant():
    """Parts: e1 for every rule under the published names, the random direction for Adam (by
    its flag, not its name) and for GD, its pairing partner on the same data; none for
    momentum. A study of rotation-invariant rules only has no random part at all."""
    from jaxbof.experiments import optimizers as O

    ps = O.parts(True)
    assert [p.subdir for p in ps if p.kind == "classification"] == [
        "classification-sgd",
        "classification-sgd-random",
        "classification-momentum-0.9",
        "classification-adam-0.001",
        "classification-adam-0.001-random",
        "classification-adam-1e-05",
        "classification-adam-1e-05-random",
    ]
    for p in ps:
        if p.kind == "classification":
            assert p.protocol.signal == p.signal and p.protocol.optimizer.spec == p.optimizer
            assert (p.signal == Signal.RANDOM) == p.subdir.endswith("-random")
    assert [p.subdir for p in ps if p.kind == "regression"] == [
        "regression-sgd",
        "regression-momentum-0.9",
        "regression-adam-0.001",
        "regression-adam-1e-05",
    ]  # the sphere has no preferred axis: one part per rule
    assert O.signals("sign:1e-3", ("sign:1e-3",)) == (Signal.E1, Signal.RANDOM)
    assert O.signals("sgd", ("sgd", "nesterov:0.9")) == (Signal.E1,)
    parts = O.config(True)["experiment"]["parts"]
    assert parts["classification-adam-0.001-random"] == {
        "kind": "classification",
        "optimizer": "adam:0.001",
        "signal": "random",
    }
    assert parts["regression-sgd"] == {"kind": "regression", "optimizer": "sgd"}


def test_an_older_study_root_is_adopted_and_another_study_refused(tmp_path):
    """A root config from before the random direction (parts without a signal, no random
    parts) is this study with fewer parts: adopted, so its part directories resume."""
    from jaxbof.experiments import optimizers as O

    new = O.config(True)
    old = json.loads(json.dumps(new))
    old["experiment"]["parts"] = {
        sub: {k: v for k, v in e.items() if k != "signal"}
        for sub, e in new["experiment"]["parts"].items()
        if not sub.endswith("-random")
    }
    root = tmp_path / "old"
    store.write_config(root, old)
    O.write_root_config(root, new)
    assert store.load_config(root)["experiment"] == store.jsonable(new)["experiment"]
    O.write_root_config(root, new)  # and again: the same study
    with pytest.raises(ValueError, match="another study"):
        O.write_root_config(root, O.config(True, ("sgd", "momentum:0.9")))
    wrong = json.loads(json.dumps(old))
    wrong["experiment"]["parts"]["classification-sgd"]["optimizer"] = "adam:0.001"
    store.write_config(tmp_path / "w", wrong)
    with pytest.raises(ValueError, match="another study"):
        O.write_root_config(tmp_path / "w", new)


def test_study_table_and_picture_read_the_parts(tmp_path):
    """The study's comparison from synthetic part directories: the table's paired difference
    equals the one computed here by hand, each rule and signal direction paired with GD on
    the same direction (the table names that part), flagged runs are counted and left out, the
    picture is drawn, and a root holding another study is refused."""
    from jaxbof import plots
    from jaxbof.experiments import classification as C
    from jaxbof.experiments import optimizers as O
    from jaxbof.experiments.optimizers import figures as ofig

    specs = ("sgd", "adam:0.001")
    root = tmp_path / "study"
    O.write_root_config(root, O.config(True, specs))
    rng = np.random.default_rng(0)
    blank = {
        c: {"int": 0, "float": 0.0, "bool": False, "str": "direct"}[k] for c, k in C.COLUMNS.items()
    }
    errors = {}
    for spec in specs:
        for sig in (Signal.E1, Signal.RANDOM):
            rows = []
            for n in (50, 100):
                for r in (1.0, 2.0):
                    for seed in (0, 1):
                        e = float(rng.uniform(0.0, 0.5))
                        ok = not (spec != "sgd" and n == 50 and r == 1.0 and seed == 0)
                        rows.append(
                            {
                                **blank,
                                "n": n,
                                "d": int(n * r),
                                "d_over_n": r,
                                "gamma": 5 / n,
                                "alpha": 0.1,
                                "noise_rate": 0.1,
                                "width": 64,
                                "seed": seed,
                                "steps": 7 + int(sig),
                                "converged": ok,
                                "test_error": e,
                            }
                        )
                        errors[(spec, sig, n, r, seed)] = (e, ok)
            _write_part(root, "classification", spec, rows, C.COLUMNS, sig)
        reg = []
        for n in (20, 40):
            for seed in (0, 1):
                for step in range(4):
                    cell = R.cells(n=n, width=8, seeds=(seed,), target="1:0.5,2:0.5")[0]
                    reg.append(
                        {
                            **cell._asdict(),
                            "eta": 0.5,
                            "step": step,
                            "t": 0.5 * step,
                            "final": step == 3,
                            "diverged": False,
                            **{
                                c: 1.0 / (1 + step)
                                for c in (
                                    "train_risk",
                                    "excess_risk",
                                    "approx_error",
                                    "estimation_error",
                                    "kernel_gap",
                                    "weight_move",
                                    "ntk_drift",
                                    "target_norm2",
                                    "noise_var",
                                    "coef_1",
                                    "coef_2",
                                    "pop_coef_1",
                                    "pop_coef_2",
                                )
                            },
                        }
                    )
        _write_part(root, "regression", spec, reg, R.columns((1, 2)))
    table = ofig.optimizer_table(root)
    assert table[0].split(",")[:3] == ["experiment", "optimizer", "signal"]
    assert table[0].endswith(",reference")
    lines = [line.split(",") for line in table if line.startswith("classification,")]
    assert [x[1:3] for x in lines] == [
        ["sgd", "e1"],
        ["sgd", "random"],
        ["adam:0.001", "e1"],
        ["adam:0.001", "random"],
    ]  # in the study's order
    for sig in (Signal.E1, Signal.RANDOM):
        name = O.signal_name(sig)
        pairs = [
            errors[("adam:0.001", *k[1:])][0] - errors[k][0]
            for k in errors
            if k[:2] == ("sgd", sig) and errors[("adam:0.001", *k[1:])][1]
        ]
        adam = next(x for x in lines if x[1:3] == ["adam:0.001", name])
        assert adam[3:5] == ["7", "1"]  # valid runs, flagged
        assert float(adam[6]) == pytest.approx(np.mean(pairs), abs=5e-5) and adam[8] == "7"
        assert adam[9] == str(7 + int(sig)) and adam[10] == O.subdir("classification", "sgd", sig)
        gd = next(x for x in lines if x[1:3] == ["sgd", name])
        assert float(gd[6]) == 0.0 and gd[8] == "8"  # paired with itself, not the other draw
    assert sum(line.startswith("regression,") for line in table) == 4  # 2 rules x 2 n
    paths = plots.plot_dir(root)
    assert paths == [str(root / "optimizers.png")] and (root / "optimizers.png").stat().st_size
    with pytest.raises(ValueError, match="another study"):
        store.write_config(root, O.config(True, ("sgd", "momentum:0.9")))
