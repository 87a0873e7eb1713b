"""`jaxbof verify`: the intervals against closed forms, the verdict rules, the classification
claims K1-K5 on rows where they must hold and on tampered rows where they must fail, matching a
results directory to a preset (another protocol skipped in one line), the report and the exit
code through the command line."""

import json
import math

import numpy as np
import pytest

from jaxbof import cli, stats, store, verify
from jaxbof.contract import Claim, Criterion, Estimate
from jaxbof.experiments.classification import claims as K
from jaxbof.experiments.classification.cells import COLUMNS

# ----------------------------------------------------------------------------- intervals


def test_clopper_pearson_against_its_closed_forms():
    """All successes: the lower bound is (alpha/2)^(1/n); none: the upper 1 - (alpha/2)^(1/n);
    and the two-sided bounds are the beta quantiles' fixed points (checked by the binomial
    tail at the bound)."""
    from scipy import stats as sps

    got = stats.clopper_pearson(200, 200)
    assert got.low == pytest.approx(0.025 ** (1 / 200)) and got.high == 1.0
    got = stats.clopper_pearson(0, 40)
    assert got.high == pytest.approx(1 - 0.025 ** (1 / 40)) and got.low == 0.0
    got = stats.clopper_pearson(7, 30)
    assert sps.binom.sf(6, 30, got.low) == pytest.approx(0.025)
    assert sps.binom.cdf(7, 30, got.high) == pytest.approx(0.025)


def test_t_interval_and_the_bootstrap_agree_on_a_mean():
    x = np.random.default_rng(3).normal(1.0, 2.0, size=40)
    t = stats.t_interval(x)
    half = 2.0226909 * x.std(ddof=1) / math.sqrt(40)  # t_{0.975, 39}
    assert (t.low, t.high) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-6)
    units = [[{"v": v}] for v in x]
    boot = stats.unit_interval(units, lambda us: np.mean([u[0]["v"] for u in us]))
    assert boot.method.startswith("percentile bootstrap, 2000 resamples of 40 units")
    assert boot.high - boot.low == pytest.approx(t.high - t.low, rel=0.15)
    few = stats.unit_interval(units[:5], lambda us: np.mean([u[0]["v"] for u in us]))
    assert few.method == "t-interval over 5 units"  # too few units for a bootstrap


def test_verdicts_follow_the_interval_not_the_estimate():
    c = Criterion(0.45, 0.55)
    assert c.verdict(0.46, 0.54) == "holds"
    assert c.verdict(0.56, 0.60) == "fails" and c.verdict(0.1, 0.2) == "fails"
    assert c.verdict(0.40, 0.50) == "inconclusive"
    assert Criterion(low=0.98).verdict(0.99, 1.0) == "holds"
    assert Criterion(high=0.0).verdict(-1.0, 0.1) == "inconclusive"
    assert c.verdict(math.nan, math.nan) == "inconclusive"
    est = [Estimate(0.5, 0.46, 0.54, "t"), Estimate(0.5, 0.40, 0.52, "t")]
    assert verify.verdict_of(c, est) == "inconclusive"
    assert verify.verdict_of(c, est + [Estimate(0.7, 0.6, 0.8, "t")]) == "fails"
    assert verify.verdict_of(c, est[:1]) == "holds"


# ----------------------------------------------------------------------------- K1-K5


def _fig1_rows(
    error, seeds=10, ns=(50, 100, 150), ratios=(1.0, 2.0, 3.0, 4.0, 7.0, 10.0), linear=None, seed=0
):
    """Rows of a Figure 1 grid whose test error is error(n, d/n) plus noise of 0.01."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        for n in ns:
            for q in ratios:
                e = float(np.clip(error(n, q) + 0.01 * rng.standard_normal(), 0, 1))
                lin = e + (0.03 if linear is None else linear(n, q))
                rows.append(
                    dict(
                        n=n,
                        d_over_n=q,
                        gamma=5 / n,
                        seed=s,
                        test_error=e,
                        train_error=0.0,
                        converged=True,
                        diverged=False,
                        linear_test_error=lin,
                    )
                )
    return rows


CONFIG = {"flags": {"converged": False, "diverged": True}}


def _verdict(claim, rows):
    got = claim.estimate(rows, CONFIG, 0.95)
    return verify.verdict_of(claim.criterion, got if isinstance(got, list) else [got])


def test_k1_overfitting_holds_when_every_run_fits_and_fails_when_one_in_ten_does_not():
    rows = _fig1_rows(lambda n, q: 0.1, seeds=20)
    assert _verdict(K.CLAIMS[0], rows) == "holds"  # 360 of 360: lower bound 0.990
    assert _verdict(K.CLAIMS[0], rows[:180]) == "inconclusive"  # 180 of 180: 0.9797
    for r in rows[::10]:
        r.update(converged=False, train_error=0.02)
    assert _verdict(K.CLAIMS[0], rows) == "fails"


def test_k2_holds_for_an_exponential_decay_in_d_over_n_and_fails_for_a_rise():
    assert _verdict(K.CLAIMS[1], _fig1_rows(lambda n, q: 0.3 * math.exp(-0.5 * q))) == "holds"
    assert _verdict(K.CLAIMS[1], _fig1_rows(lambda n, q: 0.02 * q)) == "fails"


def test_k3_holds_when_the_error_ignores_n_and_fails_when_it_grows_with_n():
    def flat(n, q):
        return 0.2 - 0.02 * q

    assert _verdict(K.CLAIMS[2], _fig1_rows(flat, seeds=30)) == "holds"
    assert _verdict(K.CLAIMS[2], _fig1_rows(lambda n, q: flat(n, q) + 0.002 * n)) == "fails"


def test_k4_holds_at_chance_without_signal_for_every_n_and_fails_if_one_n_learns():
    rows = [
        dict(
            n=n,
            d_over_n=2.0,
            gamma=g,
            seed=s,
            test_error=(0.5 if g == 0 else 0.1)
            + 0.02 * np.random.default_rng(s * 7 + n).standard_normal(),
            train_error=0.0,
            converged=True,
            diverged=False,
            linear_test_error=0.5,
        )
        for n in (50, 100, 150, 200)
        for g in (0.0, 0.05)
        for s in range(10)
    ]
    assert _verdict(K.CLAIMS[3], rows) == "holds"
    for r in rows:
        if r["n"] == 150 and r["gamma"] == 0:
            r["test_error"] -= 0.3
    assert _verdict(K.CLAIMS[3], rows) == "fails"


def test_k5_holds_when_the_network_beats_the_linear_classifier_and_fails_reversed():
    assert _verdict(K.CLAIMS[4], _fig1_rows(lambda n, q: 0.1)) == "holds"
    assert _verdict(K.CLAIMS[4], _fig1_rows(lambda n, q: 0.1, linear=lambda n, q: -0.05)) == "fails"


# ----------------------------------------------------------------------------- directories


def _write(directory, rows, entry):
    """A results directory as `jaxbof reproduce` leaves it, with these rows."""
    full = [
        {
            c: r.get(c, {"int": 0, "float": 0.0, "bool": False, "str": "gram"}[t])
            for c, t in COLUMNS.items()
        }
        for r in rows
    ]
    config = {"experiment": {**entry, "precision": "float32"}, "run": {}}
    with store.ResultsWriter(
        directory, config, COLUMNS, keys=("n", "d_over_n", "seed"), flags=CONFIG["flags"]
    ) as w:
        w.write(full)


def test_verify_results_evaluates_the_matching_directory_and_skips_another_protocol(
    tmp_path, capsys
):
    entry = verify.preset_entry("karhadkar-fig1", True)
    rows = [
        r
        for r in _fig1_rows(
            lambda n, q: 0.3 * math.exp(-0.4 * q), ratios=(1.0, 2.0, 4.0, 7.0, 10.0)
        )
        if r["seed"] < 2
    ]
    for r in rows:
        r["d"] = int(r["n"] * r["d_over_n"])
    _write(tmp_path / "fig1", rows, entry)
    other = json.loads(json.dumps(entry))
    other["protocol"]["n_test"] = 10
    _write(tmp_path / "fig1-small-test", rows, other)
    rc = cli.main(["verify", "classification", "--results", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (
        "fig1-small-test: classification run 'karhadkar-fig1-quick' is not karhadkar-fig1 "
        "--quick (protocol differ): skipped" in err
    )
    lines = [line for line in out.splitlines() if line.startswith("| K")]
    assert [line.split(" | ")[0] for line in lines] == ["| K1", "| K2", "| K3", "| K4", "| K5"]
    assert "not evaluated" in lines[3]  # no karhadkar-fig2 under the directory
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["provenance"]["schema_version"] == 1
    k2 = next(c for c in report["claims"] if c["id"] == "K2")
    assert k2["directory"] == str(tmp_path / "fig1") and k2["estimates"][0]["estimate"] < 0
    assert (tmp_path / "report.html").read_text().count("<tr") == 6
    assert "| K2 | classification |" in (tmp_path / "report.md").read_text()


def test_a_contradicted_expectation_is_exit_code_1(tmp_path):
    claim = Claim(
        "X1",
        "a claim expected to fail",
        "test",
        "karhadkar-fig1",
        lambda rows, config, level: Estimate(1.0, 0.9, 1.1, "fixed"),
        Criterion(0.5, 1.5),
        expected="fails",
        reason="for the test",
    )
    held = verify.Result("classification", claim, (Estimate(1.0, 0.9, 1.1, "fixed"),), "holds")
    lines, code = verify.report([held], tmp_path)
    assert code == 1 and "holds **(contradicts)**" in lines[2]
    _, code = verify.report([held._replace(verdict="inconclusive")], tmp_path)
    assert code == 0


def test_bad_input_to_verify_is_one_line(tmp_path, capsys):
    assert cli.main(["verify", "no-such", "--results", str(tmp_path)]) == 2
    assert "unknown experiment 'no-such'" in capsys.readouterr().err
    assert cli.main(["verify", "--results", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli.main(["verify", "--quick", "--results", str(tmp_path)]) == 2


def test_within_slope_is_the_fit_with_one_intercept_per_group():
    """stats.within_slope (K3, P4, S1, S2) against least squares on [x, one indicator per
    group]; nan where x varies within no group."""
    rng = np.random.default_rng(5)
    pts = [
        (g, x, 0.3 * x + g + 0.1 * rng.standard_normal())
        for g in range(4)
        for x in rng.uniform(0, 5, size=3 + g)
    ]
    X = np.array([[x] + [g == h for h in range(4)] for g, x, _ in pts], np.float64)
    y = np.array([p[2] for p in pts])
    assert stats.within_slope(pts) == pytest.approx(
        np.linalg.lstsq(X, y, rcond=None)[0][0], rel=1e-12
    )
    assert math.isnan(stats.within_slope([(0, 1.0, 2.0), (1, 2.0, 3.0), (1, 2.0, 5.0)]))
