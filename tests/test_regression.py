"""Regression experiment (Park et al. 2024): closed forms, gradients, engine wiring, resume.

float64 (conftest). Engine runs share compiled programs: every run uses Engine(slots=2), the
same protocol statics (n_test, times, degrees {1, 2, 4}) and, except the padding test, the same
prepare shape.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.linalg import expm

from jaxbof import engine, ntk, spectra, sphere
from jaxbof.experiments import regression as R
from jaxbof.model import TwoLayerParams, init_two_layer, two_layer_apply

F64 = jnp.float64
ENG = engine.Engine(slots=2)
MIX = "1:0.5,2:0.5,4:0.5"
PROTO = R.Protocol(t_max=150.0, times=12, n_test=1000, drift_every=4)
# base sweep: a noise-free single-degree target (n=200, M=2048) and two noisy seeds (n=60,
# M=2048); the mixed target also brings degrees 1 and 4 into the schema
PURE = R.cells(n=200, width=2048, seeds=1, target="2:1.0", noise=0.0)[0]
NOISY = R.cells(n=60, width=2048, seeds=2, target=MIX, noise=0.5)
BASE = [PURE] + NOISY


def _by_cell(rows):
    out = {}
    for r in rows:
        out.setdefault(R.cell_of(r), []).append(r)
    return {c: sorted(rs, key=lambda r: r["step"]) for c, rs in out.items()}


def _same(r1, r2):
    """Rows equal bit for bit (nan == nan)."""
    assert r1.keys() == r2.keys()
    for k in r1:
        a, b = r1[k], r2[k]
        if isinstance(a, float) and math.isnan(a):
            assert isinstance(b, float) and math.isnan(b), k
        else:
            assert a == b and type(a) is type(b), (k, a, b)


@pytest.fixture(scope="module")
def base():
    rows, stats = R.run_cells(BASE, PROTO, ENG, dtype=F64)
    return rows, stats


# ----------------------------------------------------------------------------- parsing, cells


def test_parse_and_canonical_target():
    assert R.parse_target("4:0.5, 1:1,2:-2e-1") == ((1, 1.0), (2, -0.2), (4, 0.5))
    assert R.canonical_target("4:0.5,1:1") == "1:1.0,4:0.5"
    assert R.canonical_target([(2, 1), (0, 0.25)]) == "0:0.25,2:1.0"
    for bad, piece in [
        ("1:0.5,2:x", "2:x"),
        ("-1:1.0", "negative"),
        ("1:1,1:2", "twice"),
        ("", "empty"),
        ("1.5:1", "integer"),
        ("3", "'3'"),
        ("1:nan", "finite"),
    ]:
        with pytest.raises(ValueError, match=piece):
            R.parse_target(bad)


def test_cells_validation_and_cell_of_roundtrip():
    cs = R.cells(n=(10, 20), width=4, seeds=2, target="2:1,1:0.5", bias=(False, True))
    assert len(cs) == 8 and cs[0] == R.Cell(
        10, 3, 4, 0, "1:0.5,2:1.0", 0.5, "uniform", "antisymmetric", False, False
    )
    for c in cs:
        row = {k: v for k, v in c._asdict().items()}
        assert R.cell_of(row) == c
    for kw, word in [
        (dict(n=0), "n=0"),
        (dict(n=5, d=1), "d=1"),
        (dict(n=5, width=3), "even"),
        (dict(n=5, noise=-0.1), "noise=-0.1"),
        (dict(n=5, seeds=0), "seeds=0"),
        (dict(n=5, noise_kind="gauss"), "noise_kind"),
        (dict(n=5, init="zero"), "init"),
    ]:
        with pytest.raises(ValueError, match=word):
            R.cells(**kw)
    assert R.cells(n=5, width=3, init="gaussian")[0].width == 3
    for kw, word in [
        (dict(eta=0.0), "eta"),
        (dict(times=0), "times"),
        (dict(t_max=-1.0), "t_max"),
        (dict(n_test=0), "n_test"),
        (dict(drift_every=0), "drift_every"),
    ]:
        with pytest.raises(ValueError, match=word):
            R.Protocol(**kw)


def test_record_steps_and_default_eta():
    st = R.record_steps(0.6, 2500.0, 40)
    assert st[0] == 0 and st[1] == 1 and st[-1] == round(2500 / 0.6)
    assert np.all(np.diff(st) > 0) and len(st) <= 41
    cell = R.cells(n=10)[0]
    assert R.default_eta(cell) == pytest.approx(0.05 * 12)  # mu_1 = 1/12 at d = 3
    mu = R.eigenvalues_for(cell, 4)
    np.testing.assert_allclose(mu, [1 / 16, 1 / 12, 7 / 256, 0, 0.0022786], atol=1e-7)
    b = R.Shape(100, 3, 512, False, True)
    assert R.step_flops(b) == 4 * 100 * 3 * 512 + 2 * 100 * 512
    assert R.step_bytes(b) > 0


def test_spectra_bias_convention_matches_analytic_ntk():
    """spectra's bias kernels are ntk.analytic_ntk(bias=True) (b ~ N(0, 1), trained with W):
    quadrature of the analytic kernel as a function of u = <x, x'> against the closed forms."""
    e = np.eye(3)[0]

    def k_of(layers):
        def k(u):
            u = np.asarray(u, np.float64)
            x2 = np.stack([u, np.sqrt(1 - u**2), np.zeros_like(u)], axis=-1)
            return np.asarray(
                ntk.analytic_ntk(jnp.asarray(e[None]), jnp.asarray(x2), layers=layers, bias=True)
            )[0]

        return k

    for layers, kern in [
        (ntk.Layers.FIRST, "ntk-first-layer"),
        (ntk.Layers.BOTH, "ntk-both-layers"),
    ]:
        q = spectra.eigenvalues_quadrature(k_of(layers), 3, 6).eigenvalue
        mu = spectra.eigenvalues(kern, 3, 6, bias=True).eigenvalue
        np.testing.assert_allclose(q, mu, rtol=1e-6, atol=1e-12)
        cell = R.cells(n=5, bias=True, train_outer=layers is ntk.Layers.BOTH)[0]
        np.testing.assert_allclose(R.eigenvalues_for(cell, 6), mu, rtol=1e-12)


# ----------------------------------------------------------------------------- model pieces


def _slot(n=20, M=16, d=3, bias=False, outer=False, anti=True, seed=0, eta=0.1):
    """A slot built from NumPy draws (no engine, nothing compiled)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Xt = rng.normal(size=(30, d))
    Xt /= np.linalg.norm(Xt, axis=1, keepdims=True)
    xi = rng.normal(size=(2, d))
    xi /= np.linalg.norm(xi, axis=1, keepdims=True)
    raw = TwoLayerParams(
        jnp.asarray(rng.normal(size=(M, d))),
        jnp.asarray(rng.choice([-1.0, 1.0], M)),
        jnp.asarray(rng.normal(size=M)) if bias else None,
    )
    Yt = sphere.zonal_features(jnp.asarray(Xt), jnp.asarray(xi), (1, 2))
    sh = R.Shape(n, d, M, bias, outer)
    rec = jnp.asarray([0, 5, 10] + [np.iinfo(np.int32).max] * 3, jnp.int32)
    return R.data._finish(
        jnp.asarray(X),
        jnp.asarray(rng.uniform(-1, 1, n)),
        jnp.asarray(Xt),
        Yt,
        jnp.asarray(xi),
        raw,
        jnp.asarray(eta),
        jnp.asarray(0.3),
        jnp.asarray(False),
        jnp.asarray(anti),
        jnp.asarray([0.5, 0.7]),
        rec,
        sh,
        (1, 2),
    )


def test_antisymmetric_init_is_zero_and_matches_model():
    key = jax.random.PRNGKey(3)
    for bias in (False, True):
        g = init_two_layer(key, 12, 3, bias=bias, antisymmetric=False)
        a = init_two_layer(key, 12, 3, bias=bias, antisymmetric=True)
        built = R.data._antisymmetric(g, jnp.asarray(True))
        for x, y in zip(jax.tree.leaves(built), jax.tree.leaves(a)):
            np.testing.assert_array_equal(x, y)
        kept = R.data._antisymmetric(g, jnp.asarray(False))
        for x, y in zip(jax.tree.leaves(kept), jax.tree.leaves(g)):
            np.testing.assert_array_equal(x, y)
        X = sphere.uniform(key, 40, 3)
        assert np.all(np.asarray(R.forward(built, X)[2]) == 0.0)
        assert np.all(np.asarray(two_layer_apply(built, X)) == 0.0)
        assert np.any(np.asarray(R.forward(g, X)[2]) != 0.0)


@pytest.mark.parametrize("bias,outer", [(False, False), (True, False), (True, True)])
def test_hand_gradient_equals_autodiff(bias, outer):
    slot = _slot(bias=bias, outer=outer, anti=False)
    st, X, y = slot.state, slot.data.X, slot.data.y
    p = TwoLayerParams(st.W, st.a, st.b)
    H, A, f = R.forward(p, X)
    np.testing.assert_allclose(f, two_layer_apply(p, X), rtol=1e-12, atol=1e-14)
    g = R.gradients(p, X, y, H, A, f)
    ref = jax.grad(lambda q: jnp.sum((two_layer_apply(q, X) - y) ** 2) / (2 * X.shape[0]))(p)
    for mine, theirs in zip(jax.tree.leaves(g), jax.tree.leaves(ref)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)


def test_step_halts_at_records_and_keeps_halted_state():
    slot = _slot(outer=True, anti=False)
    st = slot.state
    s1 = R.gd_step(slot, st)  # steps 0 == rec_steps[0]: halt, no update
    assert bool(s1.done) and int(s1.steps) == 0
    np.testing.assert_array_equal(s1.W, st.W)
    np.testing.assert_array_equal(s1.f_n, R.forward(TwoLayerParams(st.W, st.a), slot.data.X)[2])
    np.testing.assert_allclose(
        s1.f_n, two_layer_apply(TwoLayerParams(st.W, st.a), slot.data.X), rtol=1e-12, atol=1e-14
    )
    s2 = R.gd_step(slot, s1)  # halted: unchanged
    for x, y in zip(jax.tree.leaves(s2), jax.tree.leaves(s1)):
        np.testing.assert_array_equal(x, y)
    s = R.resume_slot(slot._replace(state=s1)).state
    assert int(s.rec) == 1 and not bool(s.done)
    for _ in range(5):
        s = R.gd_step(slot, s)
    assert int(s.steps) == 5 and not bool(s.done)
    assert np.any(np.asarray(s.a) != np.asarray(st.a))  # outer layer trained
    s = R.gd_step(slot, s)
    assert bool(s.done) and int(s.steps) == 5
    bad = slot._replace(data=slot.data._replace(X=slot.data.X.at[0, 0].set(jnp.nan)))
    sb = R.gd_step(bad, R.resume_slot(slot._replace(state=s1)).state)
    assert bool(sb.done) and bool(sb.diverged) and int(sb.steps) == 0


# ----------------------------------------------------------------------------- closed forms


def test_approx_error_matches_population_flow():
    """df/dt = -(1/N) K_inf (f - f*) from f = 0 on N uniform points with the analytic kernel:
    ||f_t - f*||^2 against sum_k exp(-2 t mu_k) c_k^2 (MC accuracy ~ 3% at these times)."""
    N, deg, c = 1000, (1, 2, 4), np.array([0.5, 0.5, 0.5])
    X = sphere.uniform(jax.random.PRNGKey(1), N, 3)
    Y = np.asarray(sphere.zonal_features(X, sphere.directions(jax.random.PRNGKey(2), deg, 3), deg))
    lam, U = scipy.linalg.eigh(np.asarray(ntk.analytic_ntk(X)) / N, driver="evr")
    z = U.T @ (Y @ c)
    mu = R.eigenvalues_for(R.cells(n=1)[0], 4)[list(deg)]
    for t in (0.0, 10.0, 50.0, 200.0, 500.0):
        flow = np.mean((U @ (np.exp(-t * lam) * z)) ** 2)
        assert flow == pytest.approx(R.approx_error(t, mu, c), rel=0.05)


def test_linear_prediction_matches_matrix_exponential():
    rng = np.random.default_rng(0)
    n, nt = 12, 7
    B = rng.normal(size=(n + nt, 8))  # rank 8 < n: K has (rounding-level) zero eigenvalues
    K = B @ B.T / 8
    Kn, Kt = K[:n, :n], K[n:, :n]
    r0, f0t = rng.normal(size=n), rng.normal(size=nt)
    lam, U = np.linalg.eigh(Kn)
    for t in (0.0, 0.3, 5.0, 200.0):
        # f_t^lin = f_0 - int_0^t (1/n) K_tX e^{-s K/n} ds (-(y - f_0)): block matrix exponential
        A = np.zeros((n + 1, n + 1))
        A[:n, :n] = -Kn / n
        A[:n, n] = r0 / n
        E = expm(A * t)  # last column: int_0^t e^{-sK/n} ds r0 / n
        ref = f0t + Kt @ E[:n, n]
        got = R.linear_prediction(t, n, lam, Kt @ U, U.T @ r0, f0t)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        R.measure._phi(np.array([0.0, 1e-14, 1e-3, 1.0, 50.0])),
        [1.0, 1 - 5e-15, -np.expm1(-1e-3) / 1e-3, 1 - np.exp(-1.0), 1 / 50],
        rtol=1e-14,
    )


# ----------------------------------------------------------------------------- engine runs


def test_schema_and_rows(base):
    rows, stats = base
    exp = engine.plan(R.experiment(PROTO, BASE), BASE)
    assert list(exp.columns) == list(R.columns((1, 2, 4)))
    assert list(exp.columns)[-6:] == [
        "coef_1",
        "pop_coef_1",
        "coef_2",
        "pop_coef_2",
        "coef_4",
        "pop_coef_4",
    ]
    for r in rows:
        assert list(r) == list(exp.columns)
    by = _by_cell(rows)
    assert set(by) == set(BASE) and stats.models == len(BASE)
    for cell, rs in by.items():
        steps = R.record_steps(R.default_eta(cell), PROTO.t_max, PROTO.times)
        assert [r["step"] for r in rs] == list(steps)
        assert [r["final"] for r in rs] == [False] * (len(rs) - 1) + [True]
        assert not any(r["diverged"] for r in rs)
        # f_0 = 0: nothing learned at t = 0, kernel prediction exact
        r0 = rs[0]
        assert r0["kernel_gap"] == 0.0 and r0["weight_move"] == 0.0 and r0["estimation_error"] == 0
        assert all(r0[f"coef_{k}"] == 0.0 for k in (1, 2, 4))
        assert r0["approx_error"] == r0["target_norm2"]
        drift = [i for i, r in enumerate(rs) if not math.isnan(r["ntk_drift"])]
        assert drift == sorted(set(range(0, len(rs), 4)) | {len(rs) - 1})
        assert rs[0]["ntk_drift"] < 1e-12
        assert rs[-1]["t"] == pytest.approx(PROTO.t_max, rel=1e-3)
        for r in rs:
            assert r["approx_error"] == R.approx_error(
                r["t"],
                R.eigenvalues_for(cell, 4)[[1, 2, 4]],
                [dict(R.parse_target(cell.target)).get(k, 0.0) for k in (1, 2, 4)],
            )
    last = by[PURE][-1]
    assert math.isnan(last["pop_coef_1"]) and math.isnan(last["pop_coef_4"])
    assert last["pop_coef_2"] == -math.expm1(-last["t"] * R.eigenvalues_for(PURE, 2)[2])


def test_training_risk_falls_and_net_tracks_kernel(base):
    by = _by_cell(base[0])
    for cell in NOISY:
        rs = by[cell]
        tr = [r["train_risk"] for r in rs]
        assert all(b <= a for a, b in zip(tr, tr[1:])) and tr[-1] < 0.5 * tr[0]
        assert rs[0]["train_risk"] > 0
        for r in rs[1:]:  # M = 2048 >> n = 60: the net stays at its linearisation
            f2 = np.mean([r[f"coef_{k}"] ** 2 for k in (1, 2, 4)])
            assert r["kernel_gap"] < 0.02 * f2
        assert 0 < rs[-1]["ntk_drift"] < 0.1 and 0 < rs[-1]["weight_move"] < 1


def test_single_degree_decays_at_rate_two_mu(base):
    """Noise-free f* = Y_2: log excess risk falls at rate 2 mu_2 until the finite-n floor. To
    first order f_t = t T_n f* with <f*, T_n f*> = mu_2 mean_train(f*^2) (Funk-Hecke), so the
    rate carries the factor mean_train f*^2 / mean_test f*^2 = train_risk(0) / excess_risk(0)."""
    rs = _by_cell(base[0])[PURE]
    t = np.array([r["t"] for r in rs])
    e = np.array([r["excess_risk"] for r in rs])
    mu2 = R.eigenvalues_for(PURE, 2)[2]
    sel = e / e[0] > 0.05
    assert sel.sum() >= 6
    slope = np.polyfit(t[sel], np.log(e[sel]), 1)[0]
    ratio = rs[0]["train_risk"] / rs[0]["excess_risk"]
    assert slope == pytest.approx(-2 * mu2 * ratio, rel=0.1)
    assert slope == pytest.approx(-2 * mu2, rel=0.2)
    # and the learned coefficient rises like the population one
    for r in rs:
        assert r["coef_2"] == pytest.approx(r["pop_coef_2"], abs=0.1)


def test_halving_eta_does_not_move_curves(base):
    """The default step (eta = 0.6 at d = 3) against eta = 0.3: equal at the shared times
    (t = 0.6, 3, 150) to 3% (GD's rate error is ~ eta mu / 2 relative: 0.8% at mu_2, so a curve
    decayed to e^-8 moves by ~3%), and to 5% against the finer run interpolated (log-linearly
    in t, which adds its own error)."""
    half, _ = R.run_cells(
        BASE,
        R.Protocol(
            eta=0.3, t_max=PROTO.t_max, times=PROTO.times, n_test=PROTO.n_test, drift_every=4
        ),
        ENG,
        dtype=F64,
    )
    coarse, fine = _by_cell(base[0]), _by_cell(half)
    for cell in BASE:
        a, b = coarse[cell], fine[cell]
        assert a[0]["eta"] == pytest.approx(0.6, rel=1e-12) and b[0]["eta"] == 0.3
        tb = {round(r["t"], 9): r for r in b}
        shared = [r for r in a if round(r["t"], 9) in tb]
        assert [round(r["t"], 9) for r in shared] == [0.0, 0.6, 3.0, 150.0]
        for r in shared:
            other = tb[round(r["t"], 9)]
            for col in ("excess_risk", "train_risk", "coef_2"):
                assert r[col] == pytest.approx(other[col], rel=0.03, abs=1e-12), col
            # a difference of two close curves: compared on the scale of the excess risk
            assert abs(r["estimation_error"] - other["estimation_error"]) <= 0.01 * r["excess_risk"]
        t, le = [r["t"] for r in b], np.log([r["excess_risk"] for r in b])
        for r in a[1:]:
            assert r["excess_risk"] == pytest.approx(np.exp(np.interp(r["t"], t, le)), rel=0.05)


def test_same_keys_same_rows_and_cells_independent(base):
    rows, _ = base
    again, _ = R.run_cells(BASE, PROTO, ENG, dtype=F64)
    ref = _by_cell(rows)
    for cell, rs in _by_cell(again).items():
        for r1, r2 in zip(rs, ref[cell]):
            _same(r1, r2)
    # more cells: larger n and M (a larger prepare shape, cropped), a third cell in the n = 60
    # bucket (3 slots per batch instead of 2), a bias and an outer-layer bucket; the base cells'
    # rows do not change
    extra = [
        R.cells(n=100, width=2048, seeds=5, target=MIX)[0],
        R.cells(n=60, width=2048, seeds=[7], target=MIX)[0],
        R.cells(n=20, width=4096, seeds=5, target=MIX, init="gaussian")[0],
        R.cells(n=60, width=2048, seeds=5, target=MIX, bias=True)[0],
        R.cells(n=60, width=2048, seeds=5, target=MIX, train_outer=True, noise_kind="rademacher")[
            0
        ],
    ]
    more, _ = R.run_cells(extra[:2] + BASE + extra[2:], PROTO, engine.Engine(slots=3), dtype=F64)
    by = _by_cell(more)
    for cell in BASE:
        assert len(by[cell]) == len(ref[cell])
        for r1, r2 in zip(by[cell], ref[cell]):
            _same(r1, r2)
    for cell in extra:
        rs = by[cell]
        assert rs[-1]["final"] and not rs[-1]["diverged"]
        assert rs[-1]["train_risk"] < rs[0]["train_risk"]
        if cell.init == "gaussian":
            assert rs[0]["excess_risk"] != rs[0]["approx_error"]  # f_0 != 0
        else:
            assert rs[0]["kernel_gap"] == 0.0
        assert rs[-1]["noise_var"] == (0.25 if cell.noise_kind == "rademacher" else 0.25 / 3)
        f2 = np.mean([rs[-1][f"coef_{k}"] ** 2 for k in (1, 2, 4)])
        assert rs[-1]["kernel_gap"] < 0.05 * f2  # wide nets track their kernel (bias, outer too)


def test_resume_after_interruption(base):
    rows, _ = base
    exp = R.experiment(PROTO, BASE)
    stored = []

    def on_rows(new):
        if stored:
            raise KeyboardInterrupt
        stored.extend(new)

    with pytest.raises(KeyboardInterrupt):
        engine.run(exp, BASE, ENG, on_rows=on_rows, dtype=F64)
    assert 0 < len(stored) < len(rows)
    res = engine.resume(exp, stored, BASE)
    todo = [c for c in BASE if c not in res.done]
    assert todo
    rerun, _ = engine.run(exp, todo, ENG, dtype=F64)
    final = stored + res.new_rows(rerun)
    assert len(final) == len(rows)
    key = lambda r: tuple(r[k] for k in res.key_columns)
    ref = {key(r): r for r in rows}
    assert len({key(r) for r in final}) == len(final)
    for r in final:
        _same(r, ref[key(r)])
