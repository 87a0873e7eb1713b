"""Summaries of result rows, JAX-free: means with their standard errors over valid runs,
paired differences, log-log fits. The store, the figures and the instruments share them.

A run is flagged (left out of every mean, and counted) when one of its columns holds the value
its experiment declares a failure (`engine.Experiment.flags`, recorded in config.json under
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
# never flags it). The default of engine.Experiment.flags, and the reading of results written
# before config.json recorded an experiment's flags.
FLAGS = {"diverged": True, "converged": False}


def declared_flags(columns: Iterable[str], flags: Mapping | None = None) -> dict:
    """An experiment's flags (engine.Experiment.flags): `flags`, or where it declares none
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


def aggregate(rows: Iterable[Mapping], by: str | Sequence[str], value: str,
              flags: Mapping | None = None) -> dict:
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


def paired_differences(base: Iterable[Mapping], other: Iterable[Mapping], keys: Sequence[str],
                       by: Sequence[str], value: str, flags: Mapping | None = None) -> dict:
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
        if old is not r and (not (a == b or math.isnan(a) and math.isnan(b))
                             or is_flagged(old, flags) != is_flagged(r, flags)):
            # e.g. the baseline on two signal directions with "signal" not in keys
            raise ValueError(f"paired_differences: two different base runs share "
                             f"{dict(zip(keys, key))}; the keys must tell them apart")
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
