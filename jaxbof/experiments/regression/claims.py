"""The regression experiment's checkable claims (`jaxbof verify`), Park et al. 2024 (arXiv
2410.06191): a two-layer ReLU net trained by gradient flow in the NTK regime, its excess risk
split into the approximation error of the population flow and an estimation error.

Each claim reads the `park-regression` preset (results.csv and config.json only; JAX-free):
rows are one per (run, recorded time), a run being one cell (n, d, width M, seed, target, ...);
`final` marks a run's last row, `diverged` flags a run (left out whole, and counted). Only the
main study is read: the target f* = 0.5 Y_1 + 0.5 Y_2 + 0.5 Y_4, antisymmetric init (f_0 = 0),
no bias, first layer trained. "Largest n" is the largest n of the main study; "widest width"
the widest width that every n of it has (4096 in the full preset, 1024 in the quick one).

Intervals are 95% (`stats.unit_interval`): a percentile bootstrap (2000 resamples, seed 0) with
at least 10 independent units, else a t-interval over each unit's own value of the statistic.
The unit is a seed, resampled whole with all its recorded times: a seed's runs share their data
(training points and test points are drawn from (d, seed), nested across n), so the runs of one
seed at several n or M are paired, never independent; at one (n, M) a seed is one run. A claim
over several cells (times, degrees, pairs of n) has one interval per cell at the Bonferroni
level, so that the family is at 95%: it holds when every cell holds, fails when any fails.

P1  excess risk follows approx_error while it dominates: relative gap within +-10%, every time
    where approx_error > 10 x the final excess risk (largest n, widest width).
P2  spectral decay: (c_k - coef_k(t))^2 decays at a fitted rate within 25% of 2 mu_k, k = 1, 2.
P3  the final excess risk falls with n at the widest width: each paired difference > 0.
P4  lazy training: the final NTK drift against M has log-log slope within [-0.75, -0.25].
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from jaxbof import stats
from jaxbof.contract import Claim, Criterion, Estimate

PRESET = "park-regression"
SOURCE = "Park et al. 2024 (arXiv 2410.06191)"
# the preset's main study: the cells every claim reads
MAIN = {"target": "1:0.5,2:0.5,4:0.5", "init": "antisymmetric", "bias": False, "train_outer": False}
RUN = ("n", "d", "width", "seed", "target", "noise", "noise_kind", "init", "bias", "train_outer")

P1_DOMINANCE = 10.0  # approx_error > 10 x the final excess risk: the approximation dominates
P1_GAP = 0.10  # |excess_risk / approx_error - 1| <= 10%
P2_DEGREES = (1, 2)
P2_FLOOR = 10.0  # the fit stops where the error first falls to 10 x the estimation floor
P2_RATE = 0.25  # fitted rate / (2 mu_k) within 1 +- 25%
P2_MIN_TIMES = 3  # recorded times a decay fit needs at least
P4_SLOPE = (-0.75, -0.25)  # theory: -1/2


# ----------------------------------------------------------------------------- reading


def target_coefs(target: str) -> dict[int, float]:
    """'1:0.5,2:0.5,4:0.5' -> {1: 0.5, 2: 0.5, 4: 0.5}: the target's coefficients c_k."""
    return {int(k): float(c) for k, c in (p.split(":") for p in target.split(","))}


class _Study:
    """The main study's runs that finished and did not diverge, by (n, width, seed), each as
    {step: row}; and what was left out."""

    def __init__(self, rows: Sequence[Mapping], config: Mapping):
        flags = stats.flags_of(config)
        runs: dict = {}
        for r in rows:
            if all(r.get(c) == v for c, v in MAIN.items()):
                runs.setdefault(tuple(r[c] for c in RUN), []).append(r)
        if not runs:
            main = ", ".join(f"{c}={v}" for c, v in MAIN.items())
            raise ValueError(f"no rows of the main study ({main})")
        self.diverged = self.unfinished = 0
        self.runs = {}
        for key, rs in runs.items():
            if any(stats.is_flagged(r, flags) for r in rs):
                self.diverged += 1
                continue
            if not any(r["final"] for r in rs):  # cut short: its times are not all there
                self.unfinished += 1
                continue
            run = dict(zip(RUN, key))
            name = (run["n"], run["width"], run["seed"])
            if name in self.runs:
                raise ValueError(
                    f"two runs of the main study at n={name[0]}, M={name[1]}, "
                    f"seed {name[2]} (another d or noise?): not the preset"
                )
            self.runs[name] = {r["step"]: r for r in sorted(rs, key=lambda r: r["step"])}
        if not self.runs:
            raise ValueError("every run of the main study diverged or is unfinished")
        widths: dict = {}
        for n, m, _ in self.runs:
            widths.setdefault(n, set()).add(m)
        self.widths = {n: sorted(ms) for n, ms in sorted(widths.items())}
        common = set.intersection(*(set(ms) for ms in self.widths.values()))
        if not common:
            raise ValueError(f"no width is run at every n ({self.widths})")
        self.widest = max(common)  # the widest width that every n has
        self.largest = max(self.widths)

    def seeds(self, n: int, width: int) -> list[dict]:
        """The runs at (n, width), one per seed, in seed order."""
        return [self.runs[k] for k in sorted(self.runs) if k[:2] == (n, width)]

    def note(self) -> str:
        left = [
            f"{k} {w} left out"
            for k, w in ((self.diverged, "diverged runs"), (self.unfinished, "unfinished runs"))
            if k
        ]
        return ("; " + ", ".join(left)) if left else ""


def _final(run: Mapping) -> Mapping:
    return run[max(run)]


def _estimate(
    iv: stats.Interval, unit: str, study: _Study, cell: str = "", level: float = 0.95
) -> Estimate:
    return Estimate(
        iv.value, iv.low, iv.high, f"{iv.method}; unit: {unit}{study.note()}", cell, level
    )


# ----------------------------------------------------------------------------- P1


def p1_estimate(rows, config, level: float = 0.95) -> list[Estimate]:
    """P1: excess_risk(t) / approx_error(t) - 1, one interval per recorded time t at which the
    approximation dominates, at the largest n and the widest width.

    The times: those at which approx_error(t) = sum_k e^{-2 t mu_k} c_k^2 (the same for every
    run) exceeds 10 times the final excess risk, averaged over the cell's runs (fixed once from
    all runs, before any resampling; t = 0 included). At each such time the statistic is the
    mean over the runs (seeds) of the Monte Carlo excess risk, relative to approx_error; the
    criterion |gap| <= 10% is what excess = approx + estimation gives when the estimation part
    is at most the final excess risk, and the cross term between the two parts is small. One
    interval per time at the Bonferroni level over the times.
    """
    study = _Study(rows, config)
    n, m = study.largest, study.widest
    runs = study.seeds(n, m)
    final = float(np.mean([_final(r)["excess_risk"] for r in runs]))
    steps = sorted(set.intersection(*(set(r) for r in runs)))
    times = [s for s in steps if runs[0][s]["approx_error"] > P1_DOMINANCE * final]
    if not times:
        raise ValueError(
            f"no recorded time at n={n}, M={m} where approx_error > "
            f"{P1_DOMINANCE:g} x the final excess risk {final:.3g}"
        )
    each = stats.bonferroni(level, len(times))
    out = []
    for s in times:
        approx = float(runs[0][s]["approx_error"])

        def gap(units, s=s, approx=approx):
            return float(np.mean([u[s]["excess_risk"] for u in units])) / approx - 1.0

        iv = stats.unit_interval(runs, gap, each)
        out.append(
            _estimate(
                iv,
                f"a seed's run at n={n}, M={m} ({len(runs)} runs); times "
                f"with approx_error > {P1_DOMINANCE:g} x final excess risk "
                f"{final:.3g}",
                study,
                f"t={runs[0][s]['t']:.4g}",
                each,
            )
        )
    return out


# ----------------------------------------------------------------------------- P2


def squared_errors(run: Mapping, steps: Sequence[int], k: int, c: float) -> np.ndarray:
    """(c - coef_k(t))^2 of one run at `steps`."""
    return np.array([(c - run[s][f"coef_{k}"]) ** 2 for s in steps])


def decay_rate(t: Sequence[float], errors: Sequence[np.ndarray]) -> float:
    """-(least-squares slope of log E(t) against t), E the mean of the runs' `errors`
    (`squared_errors`) at the times t."""
    return -stats.slope(t, np.log(np.mean(errors, axis=0)))


def eigenvalue(runs: Sequence[Mapping], k: int, c: float) -> float:
    """mu_k read off the population flow's column pop_coef_k = (1 - e^{-t mu_k}) c_k (the
    median over the recorded times where it is neither 0 nor c_k to rounding)."""
    mus = []
    for run in runs:
        for r in run.values():
            q = r[f"pop_coef_{k}"] / c
            if r["t"] > 0 and 1e-9 < q < 1 - 1e-9:
                mus.append(-math.log1p(-q) / r["t"])
    if not mus:
        raise ValueError(
            f"mu_{k}: no recorded time where pop_coef_{k} is strictly between 0 and c_{k}"
        )
    return float(np.median(mus))


def fit_window(runs: Sequence[Mapping], k: int, c: float) -> list[int]:
    """The recorded steps before (c - coef_k(t))^2 reaches its estimation floor: from t = 0 up
    to (not including) the first time the mean over `runs` of the squared error falls to
    P2_FLOOR x its mean at the final time (the floor the error settles at)."""
    steps = sorted(set.intersection(*(set(r) for r in runs)))
    e = [float(np.mean([(c - u[s][f"coef_{k}"]) ** 2 for u in runs])) for s in steps]
    floor = e[-1]
    out = []
    for s, v in zip(steps, e):
        if v <= P2_FLOOR * floor:
            break
        out.append(s)
    return out


def p2_estimate(rows, config, level: float = 0.95) -> list[Estimate]:
    """P2: fitted decay rate of (c_k - coef_k(t))^2 divided by 2 mu_k, for k = 1 and 2 (one
    interval each, at the Bonferroni level over the two), at the largest n and widest width.

    Population gradient flow learns each degree at its own rate: c_k - coef_k^pop(t) =
    e^{-t mu_k} c_k, so the squared error decays like e^{-2 t mu_k} until it meets the
    estimation floor (the finite-n error of the coefficient, plus its Monte Carlo error). The
    rate is minus the least-squares slope of log(mean over runs of the squared error) against
    t over the fit window (`fit_window`: from t = 0 until the mean error first falls to 10
    times its value at the final time; at that point the decaying part still exceeds the floor
    about 5-fold, so the floor bends the fit little). The window is fixed once from all the
    cell's runs, then the rate is measured on each resample (or each seed). mu_k is read off
    pop_coef_k (`eigenvalue`). Criterion: rate / (2 mu_k) in [0.75, 1.25].
    """
    study = _Study(rows, config)
    n, m = study.largest, study.widest
    runs = study.seeds(n, m)
    coefs = target_coefs(MAIN["target"])
    each = stats.bonferroni(level, len(P2_DEGREES))
    out = []
    for k in P2_DEGREES:
        c = coefs[k]
        mu = eigenvalue(runs, k, c)
        steps = fit_window(runs, k, c)
        if len(steps) < P2_MIN_TIMES:
            raise ValueError(
                f"k={k}: only {len(steps)} recorded time(s) before the squared "
                f"error reaches {P2_FLOOR:g} x its floor (need {P2_MIN_TIMES})"
            )
        t = [runs[0][s]["t"] for s in steps]
        iv = stats.unit_interval(
            [squared_errors(r, steps, k, c) for r in runs],
            lambda units, t=t, mu=mu: decay_rate(t, units) / (2 * mu),
            each,
        )
        t_end = runs[0][steps[-1]]["t"]
        out.append(
            _estimate(
                iv,
                f"a seed's run at n={n}, M={m} ({len(runs)} runs); rate / "
                f"(2 mu_{k}), mu_{k} = {mu:.4g}, fitted over {len(steps)} times "
                f"t <= {t_end:.4g}",
                study,
                f"k={k}",
                each,
            )
        )
    return out


# ----------------------------------------------------------------------------- P3


def p3_estimate(rows, config, level: float = 0.95) -> list[Estimate]:
    """P3: final excess risk at n minus that at the next larger n, at the widest width, paired
    by seed (nested training sets), one interval per consecutive pair of n (250 - 500 and
    500 - 1000 in the preset) at the Bonferroni level over the pairs.

    The estimation error, and with it the final excess risk (the approximation error is
    negligible by t_max), falls with the sample size: each mean paired difference must be
    above 0 (criterion: interval >= 0). A seed with a diverged run at either n is left out of
    that pair.
    """
    study = _Study(rows, config)
    m = study.widest
    ns = sorted(study.widths)
    if len(ns) < 2:
        raise ValueError(f"one n only ({ns}): nothing to compare")
    pairs = list(itertools.pairwise(ns))
    each = stats.bonferroni(level, len(pairs))
    out = []
    for a, b in pairs:
        seeds = sorted(
            {s for n, w, s in study.runs if w == m and n == a}
            & {s for n, w, s in study.runs if w == m and n == b}
        )
        units = [
            (
                _final(study.runs[(a, m, s)])["excess_risk"],
                _final(study.runs[(b, m, s)])["excess_risk"],
            )
            for s in seeds
        ]
        if not units:
            raise ValueError(f"no seed has runs at both n={a} and n={b} (M={m})")
        iv = stats.unit_interval(units, lambda us: float(np.mean([x - y for x, y in us])), each)
        out.append(
            _estimate(
                iv,
                f"a seed's pair of runs at M={m} ({len(units)} seeds)",
                study,
                f"n={a} - n={b}",
                each,
            )
        )
    return out


# ----------------------------------------------------------------------------- P4


def final_drift(run: Mapping) -> float:
    """||H_t - H_0||_op / ||H_0||_op at the run's last record (ntk_drift is recorded at every
    drift_every-th record and always at the last; the last finite one where that is missing)."""
    for s in sorted(run, reverse=True):
        v = float(run[s]["ntk_drift"])
        if math.isfinite(v):
            return v
    return math.nan


def pooled_slope(units: Sequence[Mapping]) -> float:
    """Least-squares slope of log(mean drift over the units) against log M with a separate
    intercept for each n (the within-n slope, pooled); units: {(n, M): drift}."""
    cells: dict = {}
    for u in units:
        for key, v in u.items():
            cells.setdefault(key, []).append(v)
    return stats.within_slope(
        (n, math.log(m), math.log(float(np.mean(vs)))) for (n, m), vs in cells.items()
    )


def p4_estimate(rows, config, level: float = 0.95) -> Estimate:
    """P4: the log-log slope of the final NTK drift ||H_t - H_0||_op / ||H_0||_op against the
    width M, over every n of the main study run at two widths or more (each n with its own
    intercept: the drift's prefactor depends on n, its rate in M should not).

    In the lazy (NTK) regime the weights move O(M^{-1/2}) and so does the Gram (Du et al.
    2019; Arora et al. 2019): slope -1/2, criterion [-0.75, -0.25]. The drift is averaged over
    seeds at each (n, M) before the log; the unit is a seed with its runs at every (n, M).
    """
    study = _Study(rows, config)
    ns = [n for n, ms in study.widths.items() if len(ms) >= 2]
    if not ns:
        raise ValueError(f"no n is run at two widths or more ({study.widths})")
    units: dict = {}
    for (n, m, s), run in study.runs.items():
        v = final_drift(run)
        if n in ns and math.isfinite(v) and v > 0:
            units.setdefault(s, {})[(n, m)] = v
    seeds = [units[s] for s in sorted(units)]
    iv = stats.unit_interval(seeds, pooled_slope, level)
    where = ", ".join(f"n={n}: M={'/'.join(str(m) for m in study.widths[n])}" for n in ns)
    return _estimate(
        iv, f"a seed with its runs at every (n, M) ({len(seeds)} seeds; {where})", study, "", level
    )


# ----------------------------------------------------------------------------- the claims


CLAIMS = (
    Claim(
        "P1",
        "While the approximation error dominates, the excess risk of the trained network "
        "follows the population flow's approximation error sum_k e^{-2 t mu_k} c_k^2: at the "
        "largest n and widest width, at every recorded time where approx_error exceeds 10 "
        "times the final excess risk, the Monte Carlo excess risk lies within 10% of it "
        "(criterion: excess_risk / approx_error - 1 in [-0.1, 0.1], every such time).",
        f"{SOURCE}: excess risk = approximation + estimation error; approximation error of "
        "the population NTK flow",
        PRESET,
        p1_estimate,
        Criterion(-P1_GAP, P1_GAP),
    ),
    Claim(
        "P2",
        "Spectral decay: the squared error (c_k - coef_k(t))^2 of the network's degree-k "
        "coefficient decays like e^{-2 t mu_k} for k = 1 and 2, at a rate fitted over the "
        "times before it reaches the estimation floor (largest n, widest width) within 25% of "
        "2 mu_k (criterion: fitted rate / (2 mu_k) in [0.75, 1.25], each degree).",
        f"{SOURCE}: population NTK flow f_t^pop = sum_k (1 - e^{{-t mu_k}}) c_k Y_k",
        PRESET,
        p2_estimate,
        Criterion(1 - P2_RATE, 1 + P2_RATE),
    ),
    Claim(
        "P3",
        "The estimation error falls with the sample size: the final excess risk at the widest "
        "width decreases from n = 250 to 500 to 1000 (criterion: each mean paired difference "
        "over seeds, smaller n minus larger n, has its interval above 0).",
        f"{SOURCE}: estimation error ||f_t - f_t^pop||^2, benign overfitting improving with n",
        PRESET,
        p3_estimate,
        Criterion(0.0, None),
    ),
    Claim(
        "P4",
        "Lazy training: the empirical NTK Gram's relative operator-norm drift "
        "||H_t - H_0||_op / ||H_0||_op at the final time falls with the width M like M^{-1/2} "
        "(criterion: fitted log-log slope against M in [-0.75, -0.25]; docs/regression.md measured "
        "-0.66 to -0.70, so it may end inconclusive).",
        f"{SOURCE}, NTK regime (Du et al. 2019; Arora et al. 2019): ||H_t - H_0|| = O(M^{{-1/2}})",
        PRESET,
        p4_estimate,
        Criterion(*P4_SLOPE),
    ),
)
