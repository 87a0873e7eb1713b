"""The regression claims P1-P4 (Park et al. 2024) on synthetic rows in the park-regression
schema, built from the population flow's closed forms, where they must hold, and on tampered
rows where they must fail (a rate off by 2x, errors swapped across n, a drift that grows with
M); the main-study filter, diverged runs, and the claims through `jaxbof verify` on a results
directory. No training: a real preset directory is read only where JAXBOF_PARK_QUICK_RESULTS
names one."""

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from jaxbof import verify
from jaxbof.experiments import plugin
from jaxbof.experiments.regression import claims as P

# the preset's main study: d = 3, first-layer NTK (mu_k read off the runs), eta = 0.05 / mu_1
MU = {1: 0.08333, 2: 0.02734, 3: 0.0, 4: 0.00228}
C = {1: 0.5, 2: 0.5, 4: 0.5}
ETA, T_MAX, TIMES, DRIFT_EVERY = 0.6, 2500.0, 30, 8
FULL = {250: (256, 1024, 4096, 16384), 500: (256, 1024, 4096), 1000: (256, 1024, 4096)}
QUICK = {250: (256, 1024, 4096), 500: (1024,), 1000: (1024,)}
COLUMNS = [
    "n",
    "d",
    "width",
    "seed",
    "target",
    "noise",
    "noise_kind",
    "init",
    "bias",
    "train_outer",
    "eta",
    "step",
    "t",
    "final",
    "diverged",
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
    "pop_coef_1",
    "coef_2",
    "pop_coef_2",
    "coef_3",
    "pop_coef_3",
    "coef_4",
    "pop_coef_4",
]
TYPES = (
    dict.fromkeys(COLUMNS, "float")
    | dict.fromkeys(("n", "d", "width", "seed", "step"), "int")
    | dict.fromkeys(("target", "noise_kind", "init"), "str")
    | dict.fromkeys(("bias", "train_outer", "final", "diverged"), "bool")
)


def _steps():
    t = np.concatenate([[0.0], np.geomspace(ETA, T_MAX, TIMES)])
    return np.unique(np.rint(t / ETA).astype(int))


def _run(
    n,
    m,
    seed,
    *,
    rate=1.0,
    delta=0.02,
    lag=0.0,
    floor=3.0,
    mc=0.002,
    excess_scale=1.0,
    drift=lambda n, m: 0.1 * (m / 256) ** -0.5,
    **cell,
):
    """One run's rows: the network learns degree k as c_k (1 - e^{-rate t mu_k}) plus a
    finite-n error delta_k (1 - e^{-t mu_k}) (delta_k ~ N(-lag / sqrt(n), delta^2 / n): the
    coefficients settle below c_k, as measured, lag = 0.8 at n = 1000); the excess risk is
    its squared coefficient errors, a Monte Carlo factor (1 + eps_seed) and an estimation part
    orthogonal to f* growing to floor / n; the final NTK drift is drift(n, m) (2% noise)."""
    rng = np.random.default_rng([n, m, seed])
    eps = np.random.default_rng([seed]).normal(0, mc)  # test points: one draw per seed
    dk = {k: rng.normal(-lag, delta) / math.sqrt(n) for k in C}
    est = floor / n * (1 + 0.05 * rng.normal())
    d_end = drift(n, m) * (1 + 0.02 * rng.normal())
    steps = _steps()
    rows = []
    for i, s in enumerate(steps):
        t = ETA * s
        pop = {k: c * -math.expm1(-t * MU[k]) for k, c in C.items()}
        coef = {
            k: c * -math.expm1(-rate * t * MU[k]) + dk[k] * -math.expm1(-t * MU[k])
            for k, c in C.items()
        }
        sq = sum((C[k] - coef[k]) ** 2 for k in C)
        orth = est * math.sqrt(t / T_MAX)
        last = i == len(steps) - 1
        row = dict(
            n=n,
            d=3,
            width=m,
            seed=seed,
            target="1:0.5,2:0.5,4:0.5",
            noise=0.5,
            noise_kind="uniform",
            init="antisymmetric",
            bias=False,
            train_outer=False,
            eta=ETA,
            step=int(s),
            t=t,
            final=last,
            diverged=False,
            train_risk=0.08,
            excess_risk=excess_scale * sq * (1 + eps) + orth,
            approx_error=sum(c**2 * math.exp(-2 * t * MU[k]) for k, c in C.items()),
            estimation_error=sum((coef[k] - pop[k]) ** 2 for k in C) + orth,
            kernel_gap=1e-4,
            weight_move=m**-0.5,
            ntk_drift=(d_end * (t / T_MAX) ** 0.3 if i % DRIFT_EVERY == 0 or last else math.nan),
            target_norm2=0.75,
            noise_var=0.25 / 3,
            coef_3=0.0,
            pop_coef_3=math.nan,
        )
        for k in C:
            row[f"coef_{k}"], row[f"pop_coef_{k}"] = coef[k], pop[k]
        row.update(cell)
        rows.append(row)
    return rows


def rows_of(grid=FULL, seeds=3, others=True, **kw):
    """The main study's rows over grid {n: widths}, and (others) the preset's other cells with
    rows no claim may read: a Gaussian init and a cubic target whose every value is wrong."""
    rows = [
        r for n, ms in grid.items() for m in ms for s in range(seeds) for r in _run(n, m, s, **kw)
    ]
    if others:
        bad = dict(rate=3.0, excess_scale=5.0, drift=lambda n, m: 0.1 * m**0.5)
        for s in range(seeds):
            for m in (1024, 4096):
                rows += _run(500, m, s, init="gaussian", **bad)
            for bias in (False, True):
                rows += _run(500, 4096, s, target="3:1.0", bias=bias, **bad)
    return rows


CONFIG = {"flags": {"diverged": True}}


def verdict(claim, rows, config=CONFIG):
    got = claim.estimate(rows, config, 0.95)
    return verify.verdict_of(claim.criterion, got if isinstance(got, list) else [got]), got


def claim(id_):
    return next(c for c in P.CLAIMS if c.id == id_)


# ----------------------------------------------------------------------------- the plug-in


def test_the_plugin_declares_p1_to_p4_on_park_regression():
    claims = plugin("regression").claims
    assert [c.id for c in claims] == ["P1", "P2", "P3", "P4"]
    assert all(c.reads == "park-regression" and c.expected == "holds" for c in claims)
    assert [str(c.criterion) for c in claims] == [
        "in [-0.1, 0.1]",
        "in [0.75, 1.25]",
        ">= 0",
        "in [-0.75, -0.25]",
    ]


def test_the_main_study_is_read_at_the_largest_n_and_the_widest_width_every_n_has():
    assert (P._Study(rows_of(FULL), CONFIG).largest, P._Study(rows_of(FULL), CONFIG).widest) == (
        1000,
        4096,
    )
    study = P._Study(rows_of(QUICK, seeds=2), CONFIG)
    assert (study.largest, study.widest) == (1000, 1024)  # 4096 is run at n = 250 only
    assert P.target_coefs("1:0.5,2:0.5,4:0.5") == {1: 0.5, 2: 0.5, 4: 0.5}


# ----------------------------------------------------------------------------- P1


def test_p1_holds_where_the_excess_risk_is_the_approximation_error_plus_a_small_part():
    v, got = verdict(claim("P1"), rows_of())
    assert v == "holds", [(e.cell, e.low, e.high) for e in got]
    assert got[0].cell == "t=0" and len(got) > 15  # every time that approx_error dominates
    assert all(e.level == pytest.approx(1 - 0.05 / len(got)) for e in got)
    assert "t-interval over 3 units" in got[0].method


def test_p1_holds_with_a_bootstrap_over_twelve_seeds():
    v, got = verdict(claim("P1"), rows_of(seeds=12, others=False, mc=0.01))
    assert v == "holds" and got[0].method.startswith(
        "percentile bootstrap, 2000 resamples of 12 units"
    )


@pytest.mark.parametrize(
    "tamper",
    [dict(excess_scale=1.25), dict(rate=2.0), dict(rate=0.5)],
    ids=["risk 25% above", "rate 2x", "rate half"],
)
def test_p1_fails_where_the_excess_risk_leaves_the_approximation_error(tamper):
    assert verdict(claim("P1"), rows_of(**tamper))[0] == "fails"


def test_p1_without_a_dominant_time_says_why():
    rows = rows_of(floor=1e4, others=False)  # a final excess risk above approx_error at t = 0
    with pytest.raises(ValueError, match="no recorded time at n=1000, M=4096"):
        claim("P1").estimate(rows, CONFIG, 0.95)


# ----------------------------------------------------------------------------- P2


def test_p2_holds_where_each_coefficient_decays_at_its_own_rate_to_a_floor():
    """A floor as measured: the coefficients settle about 0.025 below c_k at n = 1000."""
    v, got = verdict(claim("P2"), rows_of(lag=0.8, delta=0.2))
    assert v == "holds", [(e.cell, e.value, e.low, e.high) for e in got]
    assert [e.cell for e in got] == ["k=1", "k=2"]
    assert all(0.8 < e.value < 1.1 and e.level == pytest.approx(0.975) for e in got)
    assert "mu_1 = 0.08333" in got[0].method and "mu_2 = 0.02734" in got[1].method


def test_p2_holds_with_a_bootstrap_over_twelve_seeds_of_random_floors():
    v, got = verdict(claim("P2"), rows_of(delta=0.7, seeds=12, others=False))
    assert v == "holds" and got[0].method.startswith("percentile bootstrap")


def test_p2_fit_window_stops_before_the_floor():
    study = P._Study(rows_of(delta=0.7, others=False), CONFIG)
    runs = study.seeds(1000, 4096)
    steps = P.fit_window(runs, 1, 0.5)
    floor = np.mean([(0.5 - P._final(r)["coef_1"]) ** 2 for r in runs])
    err = [np.mean([(0.5 - r[s]["coef_1"]) ** 2 for r in runs]) for s in sorted(runs[0])]
    assert steps[0] == 0 and len(steps) >= 5
    assert min(err[: len(steps)]) > 10 * floor >= err[len(steps)]


@pytest.mark.parametrize("rate", [2.0, 0.5], ids=["rate 2x", "rate half"])
def test_p2_fails_where_the_decay_rate_is_off_by_a_factor_of_2(rate):
    v, got = verdict(claim("P2"), rows_of(lag=0.8, delta=0.2, rate=rate))
    assert v == "fails"
    assert all(abs(e.value - rate) < 0.25 * rate for e in got)


# ----------------------------------------------------------------------------- P3


def test_p3_holds_where_the_final_excess_risk_falls_like_one_over_n():
    v, got = verdict(claim("P3"), rows_of())
    assert v == "holds" and [e.cell for e in got] == ["n=250 - n=500", "n=500 - n=1000"]
    assert got[0].value == pytest.approx(3 / 250 - 3 / 500, rel=0.1)


def _swap(rows, a, b):
    """The excess risk of n = a's runs given to n = b's and back (seed, width, step kept)."""
    by = {
        (r["n"], r["width"], r["seed"], r["init"], r["target"], r["bias"], r["step"]): r[
            "excess_risk"
        ]
        for r in rows
    }
    swap = {a: b, b: a}
    return [
        {
            **r,
            "excess_risk": by[
                (swap[r["n"]], r["width"], r["seed"], r["init"], r["target"], r["bias"], r["step"])
            ],
        }
        if r["n"] in swap
        and (swap[r["n"]], r["width"], r["seed"], r["init"], r["target"], r["bias"], r["step"])
        in by
        else r
        for r in rows
    ]


def test_p3_fails_where_the_errors_are_shuffled_across_n():
    v, got = verdict(claim("P3"), _swap(rows_of(), 250, 1000))
    assert v == "fails" and got[0].high < 0 and got[1].high < 0


def test_p3_leaves_a_diverged_run_out_and_says_so():
    rows = rows_of(seeds=4)
    for r in rows:  # a run at n = 500 blows up: its rows would reverse the order of n
        if (r["n"], r["width"], r["seed"], r["init"]) == (500, 4096, 1, "antisymmetric"):
            r["excess_risk"], r["diverged"] = 1e6, r["final"]
    v, got = verdict(claim("P3"), rows)
    assert v == "holds" and "1 diverged runs left out" in got[0].method
    assert "(3 seeds)" in got[0].method and "(3 seeds)" in got[1].method


# ----------------------------------------------------------------------------- P4


def test_p4_holds_where_the_drift_falls_like_one_over_root_m():
    v, got = verdict(claim("P4"), rows_of())
    assert v == "holds" and got.value == pytest.approx(-0.5, abs=0.03)
    assert "n=250: M=256/1024/4096/16384" in got.method and "n=1000: M=256/1024/4096" in got.method


@pytest.mark.parametrize(
    "drift",
    [lambda n, m: 0.1 * (m / 256) ** 0.5, lambda n, m: 0.1 * (m / 256) ** -1.0],
    ids=["grows with M", "falls like 1/M"],
)
def test_p4_fails_where_the_drift_does_not_fall_like_one_over_root_m(drift):
    assert verdict(claim("P4"), rows_of(drift=drift))[0] == "fails"


def test_p4_pooled_slope_ignores_the_prefactor_of_each_n():
    units = [{(n, m): (n / 100) ** 2 * m**-0.5 for n in (250, 1000) for m in (256, 4096)}]
    assert P.pooled_slope(units) == pytest.approx(-0.5)


# ----------------------------------------------------------------------------- jaxbof verify


def _write(directory: Path, rows, quick: bool):
    """A results directory as `reproduce park-regression [--quick]` records it."""
    directory.mkdir(parents=True)
    entry = verify.preset_entry("park-regression", quick)
    (directory / "config.json").write_text(
        json.dumps({"experiment": entry, "flags": {"diverged": True}, "schema": TYPES})
    )
    with open(directory / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([int(r[c]) if isinstance(r[c], bool) else r[c] for c in COLUMNS])


def test_verify_reads_the_claims_from_a_quick_results_directory(tmp_path):
    _write(tmp_path / "park-regression-quick", rows_of(QUICK, seeds=2, delta=0.7), quick=True)
    results = verify.scan(tmp_path, verify.claims(["regression"]), say=lambda s: None)
    assert [r.claim.id for r in results] == ["P1", "P2", "P3", "P4"]
    assert all(r.directory and r.verdict in verify.VERDICTS and not r.note for r in results)
    p4 = results[3].estimates[0]
    assert "n=250: M=256/1024/4096" in p4.method and "n=500" not in p4.method
    assert results[1].estimates[0].method.startswith("t-interval over 2 units")


@pytest.mark.skipif(
    not os.environ.get("JAXBOF_PARK_QUICK_RESULTS"),
    reason="set JAXBOF_PARK_QUICK_RESULTS to a `reproduce park-regression "
    "--quick` directory (training it takes a minute)",
)
def test_the_claims_on_a_real_quick_preset():
    where = Path(os.environ["JAXBOF_PARK_QUICK_RESULTS"])
    results = verify.scan(where, verify.claims(["regression"]), say=lambda s: None)
    assert [r.claim.id for r in results] == ["P1", "P2", "P3", "P4"]
    for r in results:
        assert r.directory and not r.note and r.verdict in verify.VERDICTS, r
        assert all(math.isfinite(e.value) for e in r.estimates)
