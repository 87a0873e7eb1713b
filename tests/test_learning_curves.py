"""The learning-curves plug-in: kernel ridge regression on the sphere (one eigendecomposition
serving every ridge) equals a direct solve, and `jaxbof reproduce learning-curves` writes
resumable rows with the prediction beside each measurement, a table and two pictures."""

import csv

import numpy as np
import pytest

from jaxbof import cli, eigenlearning, spectra, store
from jaxbof.experiments.learning_curves import krr

TINY = krr.Config(ns=(12, 30), ridges_over_n=(0.0, 1e-3, 0.1), seeds=2, n_test=300, k_max=400)
TINY_FLOW = krr.Tempered(
    n=30,
    widths=(16,),
    seeds=1,
    kernel_seeds=2,
    t_max=200.0,
    times=5,
    n_test=300,
    k_max=400,
    target=TINY.target,
)


def _direct(config, n, seed):
    """The training set (n, seed) of `config` drawn again here, in the order krr draws it, and
    its Grams formed explicitly: (y, K(X, X), K(X_test, X), f* on the test points)."""
    import zlib

    rng = np.random.default_rng(zlib.crc32(f"{config.seed}/{n}/{seed}".encode()))
    xis = [(k, c, krr._sphere(rng, 1, 3)[0]) for k, c in config.target]

    def target(x):
        return sum(c * krr._zonal(k, 3, x @ xi) for k, c, xi in xis)

    X, Xt = krr._sphere(rng, n, 3), krr._sphere(rng, config.n_test, 3)
    y = target(X) + rng.uniform(-config.noise, config.noise, n)
    k_fn = spectra.kernel_fn("ntk-first-layer")
    return y, k_fn(np.clip(X @ X.T, -1, 1)), k_fn(np.clip(Xt @ X.T, -1, 1)), target(Xt)


def test_rows_equal_a_direct_solve_at_every_ridge():
    n, seed = 30, 1
    rows = krr.rows_for(TINY, n, seed)
    y, K, Kt, f_star = _direct(TINY, n, seed)
    levels = eigenlearning.sphere_levels("ntk-first-layer", 3, TINY.k_max)
    for row, r in zip(rows, TINY.ridges_over_n):
        a = np.linalg.solve(K + r * n * np.eye(n), y)
        np.testing.assert_allclose(row["excess_risk"], np.mean((Kt @ a - f_star) ** 2), rtol=1e-7)
        np.testing.assert_allclose(
            row["train_risk"], np.mean((K @ a - y) ** 2), rtol=1e-6, atol=1e-20
        )
        p = eigenlearning.predict(n, levels, TINY.energy(), TINY.noise**2 / 3, r * n)
        assert row["predicted_excess_risk"] == p.excess_risk and row["e0"] == p.e0
    assert rows[0]["train_risk"] < 1e-20  # ridgeless interpolates


def test_kernel_flow_equals_a_matrix_exponential_and_tends_to_ridgeless_regression():
    """f_t = K(., X) K^{-1} (I - exp(-t K / n)) y by scipy's expm; t = inf is the ridgeless row
    of rows_for on the same training set (same draws), and a large t approaches it."""
    from scipy.linalg import expm

    n, seed = TINY_FLOW.n, 1
    rows = krr.flow_rows(TINY_FLOW, seed)
    assert [r["t"] for r in rows] == list(TINY_FLOW.flow_times()) and np.isinf(rows[-1]["t"])
    y, K, Kt, f_star = _direct(TINY_FLOW, n, seed)
    levels = eigenlearning.sphere_levels("ntk-first-layer", 3, TINY_FLOW.k_max)
    for row in rows[:-1:7]:
        fit = (np.eye(n) - expm(-row["t"] * K / n)) @ y
        np.testing.assert_allclose(row["train_risk"], np.mean((fit - y) ** 2), rtol=1e-7)
        np.testing.assert_allclose(
            row["excess_risk"], np.mean((Kt @ np.linalg.solve(K, fit) - f_star) ** 2), rtol=1e-6
        )
        p = eigenlearning.predict(
            n, levels, TINY_FLOW.energy(), TINY_FLOW.noise**2 / 3, n / row["t"]
        )
        assert row["predicted_excess_risk"] == p.excess_risk
    ridgeless = krr.rows_for(TINY, n, seed)[0]
    assert ridgeless["ridge"] == 0.0
    np.testing.assert_allclose(rows[-1]["excess_risk"], ridgeless["excess_risk"], rtol=1e-9)
    assert rows[-1]["predicted_excess_risk"] == ridgeless["predicted_excess_risk"]
    # the flow tends to the interpolant: the training risk falls monotonically toward 0
    train = [r["train_risk"] for r in rows]
    assert all(a >= b for a, b in zip(train, train[1:])) and train[-1] < 1e-20


def test_the_setting_is_the_regression_experiments_default():
    """The kernel side measures what the regression experiment trains: its default target
    (c_k on degrees 1, 2, 4), noise half-width, dimension; the first-layer NTK it trains."""
    import inspect

    from jaxbof.experiments.regression import program as R

    defaults = inspect.signature(R.cells).parameters
    for config in (krr.Config(), krr.Tempered()):
        assert tuple(config.target) == R.parse_target(defaults["target"].default)
        assert config.noise == defaults["noise"].default and config.d == defaults["d"].default
        assert config.kernel == "ntk-first-layer" and not defaults["train_outer"].default
    assert krr.Config().energy() == [0.0, 0.25, 0.25, 0.0, 0.25]


def _rows(out):
    with open(out / "results.csv") as f:
        return sorted(map(tuple, (r.values() for r in csv.DictReader(f))))


def test_reproduce_writes_resumable_rows_a_table_and_pictures(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(krr, "QUICK", TINY)
    monkeypatch.setattr(krr, "TEMPERED_QUICK", TINY_FLOW)
    out = tmp_path / "lc"
    assert cli.main(["reproduce", "learning-curves", "--quick", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("ridge_over_n,n,measured,sem,predicted,gap_sem,gap_relative,seeds")
    main, tempered = table.split("curve,min_excess_risk")
    assert main.count("\n") == 1 + 2 * 3
    # the tempered table: the network (one width), the kernel flow, the prediction, two limits
    assert [line.split(",")[0] for line in tempered.splitlines()[1:]] == [
        "network M=16",
        "kernel flow",
        "eigenlearning at ridge n/t",
        "kernel ridgeless (t = inf)",
        "eigenlearning ridgeless (E_0)",
    ]
    flow = store.load_results(out / "kernel-flow")
    assert len(flow) == TINY_FLOW.kernel_seeds * len(TINY_FLOW.flow_times())
    net = store.load_results(out / "network")
    assert {r["width"] for r in net} == {16} and {r["n"] for r in net} == {30}
    assert max(r["t"] for r in net) == pytest.approx(TINY_FLOW.t_max, rel=0.01)
    assert (out / "tempered.png").stat().st_size > 0
    full = _rows(out)
    assert len(full) == 2 * 3 * 2  # n x ridges x seeds
    config = store.load_config(out)
    assert config["keys"] == ["n", "ridge_over_n", "seed"] and config["flags"] == {}
    assert (out / "learning_curves.png").stat().st_size > 0
    assert (out / "learnability.png").stat().st_size > 0
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:4]))  # an interrupted run: 3 rows kept
    assert (
        cli.main(["reproduce", "learning-curves", "--quick", "--out", str(out), "--no-plots"]) == 0
    )
    assert _rows(out) == full  # the rerun adds exactly the missing rows
    assert cli.main(["reproduce", "learning-curves", "--quick", "--slots", "2"]) == 2
    assert "takes no --slots" in capsys.readouterr().err
    # --x64 trains the network in float64 and changes nothing on the kernel side (float64 always)
    out64 = tmp_path / "lc64"
    assert (
        cli.main(
            ["reproduce", "learning-curves", "--quick", "--x64", "--no-plots", "--out", str(out64)]
        )
        == 0
    )
    assert store.load_config(out64 / "network")["experiment"]["precision"] == "float64"
    assert store.load_config(out / "network")["experiment"]["precision"] == "float32"
    assert _rows(out64) == full
    assert _rows(out64 / "kernel-flow") == _rows(out / "kernel-flow")
    net64 = store.load_results(out64 / "network")
    assert sorted(r["t"] for r in net64) == sorted(r["t"] for r in net)
    assert net64 != net  # another precision, other last bits
