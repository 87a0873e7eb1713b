"""Summaries of result rows, JAX-free: means with their standard errors over valid runs,
paired differences, log-log fits. The store, the figures and the instruments share them.

A run is flagged (left out of every mean, and counted) when one of its columns holds the value
its experiment declares a failure (`contract.Schema.flags`, recorded in config.json under
"flags"): by default, diverged, or (where the experiment has a stopping rule) not converged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np


def mean_sem(values) -> tuple[float, float]:
    """(mean, standard error std(ddof=1) / sqrt(count)) of `values`; nan where undefined."""
    x = np.asarray(values, np.float64)
    mean = float(x.mean()) if len(x) else math.nan
    sem = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) >= 2 else math.nan
    return mean, sem


class Summary(NamedTuple):
    mean: float  # over valid runs; nan if there are none
    sem: float  # standard error of the mean, std(ddof=1) / sqrt(count); nan if count < 2
    count: int  # valid runs: converged and not diverged
    flagged: int  # runs left out: not converged within max_steps, or diverged


# {column: value}: a row holding any of these values is a flagged run (a column the row lacks
# never flags it). The default of contract.Schema.flags, and the reading of results written
# before config.json recorded an experiment's flags.
FLAGS = {"diverged": True, "converged": False}


def declared_flags(columns: Iterable[str], flags: Mapping | None = None) -> dict:
    """An experiment's flags (contract.Schema.flags): `flags`, or where it declares none
    those of `FLAGS` that are among its `columns`."""
    if flags is not None:
        return dict(flags)
    return {c: v for c, v in FLAGS.items() if c in set(columns)}


def flags_of(config: Mapping | None) -> dict:
    """The flags recorded in a results directory's config.json (`FLAGS` where none are)."""
    flags = config.get("flags") if isinstance(config, Mapping) else None
    return dict(FLAGS if flags is None else flags)


def describe_flags(flags: Mapping | None = None) -> str:
    """The flags in words: "diverged or not converged" for `FLAGS`."""

    def one(c, v):
        return c if v is True else f"not {c}" if v is False else f"{c} = {v}"

    return " or ".join(one(c, v) for c, v in (FLAGS if flags is None else flags).items())


def is_flagged(row: Mapping, flags: Mapping | None = None) -> bool:
    """A run not to be averaged in: one of its `flags` columns (default `FLAGS`) holds the
    failure value."""
    return any(c in row and row[c] == v for c, v in (FLAGS if flags is None else flags).items())


def aggregate(
    rows: Iterable[Mapping], by: str | Sequence[str], value: str, flags: Mapping | None = None
) -> dict:
    """{key: Summary} of `value` grouped by the columns `by`, sorted by key.

    key is the tuple of the `by` values (the value itself when `by` is one column name).
    Flagged runs (`is_flagged` under `flags`) are counted, never averaged in.
    """
    single = isinstance(by, str)
    cols = (by,) if single else tuple(by)
    groups: dict = {}
    for r in rows:
        key = r[cols[0]] if single else tuple(r[c] for c in cols)
        vals, flagged = groups.setdefault(key, ([], [0]))
        if is_flagged(r, flags):
            flagged[0] += 1
        else:
            vals.append(float(r[value]))
    out = {}
    for key in sorted(groups):
        vals, flagged = groups[key]
        out[key] = Summary(*mean_sem(vals), len(vals), flagged[0])
    return out


def paired_differences(
    base: Iterable[Mapping],
    other: Iterable[Mapping],
    keys: Sequence[str],
    by: Sequence[str],
    value: str,
    flags: Mapping | None = None,
) -> dict:
    """{by-key: Summary} of other - base in `value`, paired run by run on the columns `keys`
    (the same cell and seed: the same data and initialisation), grouped by `by`, sorted.

    `keys` must name everything that fixes a run's data besides the rule: in the optimizer study
    also the signal direction ("signal", which the study tags on each row from its part), so that
    a run on a random signal is paired with the baseline on the same random signal, never with
    the baseline on e1 (a different data draw), and `base` may hold the baseline's runs on both.
    Two different runs of `base` with equal keys are refused (ValueError; the same run read
    twice is harmless). A pair counts only if both runs are valid (not flagged); pairs with a
    flagged run, and runs of `other` without a partner in `base`, are counted in `flagged`,
    never averaged in.
    """
    by = tuple(by)
    index = {}
    for r in base:
        key = tuple(r[k] for k in keys)
        old = index.setdefault(key, r)
        a, b = float(old[value]), float(r[value])
        if old is not r and (
            not (a == b or math.isnan(a) and math.isnan(b))
            or is_flagged(old, flags) != is_flagged(r, flags)
        ):
            # e.g. the baseline on two signal directions with "signal" not in keys
            raise ValueError(
                f"paired_differences: two different base runs share "
                f"{dict(zip(keys, key))}; the keys must tell them apart"
            )
    groups: dict = {}
    for r in other:
        vals, flagged = groups.setdefault(tuple(r[c] for c in by), ([], [0]))
        b = index.get(tuple(r[k] for k in keys))
        if b is None or is_flagged(r, flags) or is_flagged(b, flags):
            flagged[0] += 1
        else:
            vals.append(float(r[value]) - float(b[value]))
    out = {}
    for key in sorted(groups):
        vals, flagged = groups[key]
        out[key] = Summary(*mean_sem(vals), len(vals), flagged[0])
    return out


class LogSlope(NamedTuple):
    slope: float  # least squares of log y on log x; nan with < 2 usable points
    prefactor: float  # y ~ prefactor * x ** slope
    points: int  # points used (finite, > 0)


def fit_loglog_slope(x, y) -> LogSlope:
    """Least-squares line through (log x, log y) over finite positive points."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[keep])) < 2:
        return LogSlope(math.nan, math.nan, int(keep.sum()))
    slope, icpt = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return LogSlope(float(slope), float(math.exp(icpt)), int(keep.sum()))


# ----------------------------------------------------------------------------- intervals
# The unit of independent randomness (a seed's run with all its records, a data set with every
# setting trained on it) is resampled whole. With at least BOOTSTRAP_MIN units: a percentile
# bootstrap with a fixed seed and RESAMPLES resamples; with fewer, a percentile bootstrap is too
# narrow, so a t-interval over the units' own values of the statistic. Fractions of runs: an
# exact (Clopper-Pearson) interval.

RESAMPLES = 2000
BOOTSTRAP_MIN = 10
SEED = 0


class Interval(NamedTuple):
    value: float  # the statistic on every unit
    low: float
    high: float
    method: str


def bonferroni(level: float, cells: int) -> float:
    """The confidence of each of `cells` intervals so that all hold together at `level`."""
    return 1.0 - (1.0 - level) / max(1, cells)


def t_interval(values, level: float = 0.95) -> Interval:
    """mean +- t_{(1+level)/2, m-1} sd / sqrt(m) of m values (m >= 2; else unbounded)."""
    from scipy import stats as sps

    x = np.asarray(values, np.float64)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return Interval(mean, -math.inf, math.inf, f"t-interval, {len(x)} unit(s): unbounded")
    half = float(sps.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, f"t-interval over {len(x)} units")


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Interval:
    """The exact binomial interval of successes / trials."""
    from scipy import stats as sps

    if trials < 1:
        return Interval(math.nan, 0.0, 1.0, "exact (Clopper-Pearson), no trials")
    a = (1 - level) / 2
    low = 0.0 if successes == 0 else float(sps.beta.ppf(a, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(sps.beta.ppf(1 - a, successes + 1, trials - successes))
    )
    return Interval(
        successes / trials, low, high, f"exact (Clopper-Pearson), {successes} of {trials}"
    )


def unit_interval(
    units: Sequence, statistic, level: float = 0.95, *, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """`statistic(units) -> float` with its interval over the independent `units` (each a
    list of rows, resampled whole): a percentile bootstrap with at least BOOTSTRAP_MIN units,
    else a t-interval over the statistic of each unit alone. Resamples where the statistic is
    undefined (nan) are left out and counted in the method."""
    units = list(units)
    value = float(statistic(units))
    if len(units) < BOOTSTRAP_MIN:
        each = [float(statistic([u])) for u in units]
        got = t_interval([v for v in each if np.isfinite(v)], level)
        return got._replace(value=value)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            statistic([units[i] for i in rng.integers(0, len(units), len(units))])
            for _ in range(resamples)
        ],
        np.float64,
    )
    ok = draws[np.isfinite(draws)]
    if len(ok) < resamples // 2:
        return Interval(
            value,
            -math.inf,
            math.inf,
            f"bootstrap: statistic undefined in {resamples - len(ok)} of {resamples} resamples",
        )
    a = (1 - level) / 2
    low, high = np.quantile(ok, [a, 1 - a])
    left = f", {resamples - len(ok)} undefined left out" if len(ok) < resamples else ""
    return Interval(
        value,
        float(low),
        float(high),
        f"percentile bootstrap, {resamples} resamples of {len(units)} units, seed {seed}{left}",
    )


def units_by(rows: Iterable[Mapping], columns: Sequence[str]) -> list[list[Mapping]]:
    """Rows grouped into units of independent randomness by `columns` (e.g. ("seed",), or
    ("n", "d", "seed") for a data set), in sorted order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[c] for c in columns), []).append(r)
    return [groups[k] for k in sorted(groups)]


def within_slope(points: Iterable[tuple]) -> float:
    """The least-squares slope of y against x with one intercept per group, from (group, x, y)
    points: the within-group slope, sum of centred x y over sum of centred x^2, pooled over
    the groups (what a fit with one indicator column per group gives); nan where x varies
    within no group."""
    groups: dict = {}
    for g, x, y in points:
        groups.setdefault(g, []).append((x, y))
    sxy = sxx = 0.0
    for pts in groups.values():
        x, y = np.array(pts, np.float64).T
        sxy += float(np.sum((x - x.mean()) * (y - y.mean())))
        sxx += float(np.sum((x - x.mean()) ** 2))
    return sxy / sxx if sxx > 0 else math.nan


def slope(x, y) -> float:
    """The least-squares slope of y against x (nan with fewer than two distinct x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan
    return float(np.polyfit(x, y, 1)[0])
