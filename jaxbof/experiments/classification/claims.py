"""Karhadkar et al. (NeurIPS 2024) as checkable claims (`jaxbof verify`), JAX-free.

They read the presets karhadkar-fig1 (test error over (n, d/n)) and karhadkar-fig2 (test error
against the signal strength gamma at d = 2n). Each run draws its own data and network (its keys
fold in the cell's coordinates), so runs are independent; a seed is one replicate of the whole
grid. Intervals resample seeds whole (`stats.unit_interval`: a bootstrap from 10 seeds, below
that a t-interval over each seed's own statistic), except K1's fraction of runs (exact,
Clopper-Pearson). Runs flagged as diverged or not converged are left out of every mean (and
counted in K1). The criteria are fixed here, before any measurement:

K1  overfitting (Thm 3.1: GD reaches zero training loss, noisy labels included): the fraction
    of runs that stop at zero training error, exact interval's lower bound >= 0.98. A run
    stopped at zero error has fitted every corrupt label by construction; runs that did not
    converge count against it.
K2  benign in d/n (Cor. 3.2.1, test error <= exp(-C d/n)): the least-squares slope of log(mean
    test error) against d/n, the mean pooled over n at each d/n, over the d/n whose pooled mean
    is non-zero: interval's upper bound < 0.
K3  the error depends on d/n, not on n: the slope of test error against n (n = 50..150), fitted
    with its own intercept for each d/n in {1, 2, 3} (one d/n alone has too few runs at 5 per
    cell), lies within +-0.0005 per unit n (+-0.05 over the range).
K4  harmful without signal (Thm 3.4): at gamma = 0 the test error's interval lies within
    [0.45, 0.55] for every n (karhadkar-fig2; Bonferroni over n).
K5  the network beats the max-margin linear classifier on the same data: the paired difference
    linear_test_error - test_error, pooled over the cells with d/n <= 4: lower bound > 0.
"""

from __future__ import annotations

import math

import numpy as np

from jaxbof import stats
from jaxbof.contract import Claim, Criterion, Estimate

SOURCE = "Karhadkar, George, Murray, Montufar and Needell, NeurIPS 2024"


def _valid(rows, config) -> list:
    """Rows of runs not flagged (config.json's flags)."""
    flags = stats.flags_of(config)
    return [r for r in rows if not stats.is_flagged(r, flags)]


def _estimate(got: stats.Interval, level: float, cell: str = "") -> Estimate:
    return Estimate(got.value, got.low, got.high, got.method, cell, level)


def overfits(rows, config, level):
    """K1: the fraction of runs stopped at zero training error (exact interval)."""
    fit = sum(bool(r["converged"]) and r["train_error"] == 0 for r in rows)
    return _estimate(stats.clopper_pearson(fit, len(rows), level), level)


def _log_error_slope(units) -> float:
    rows = [r for u in units for r in u]
    by: dict = {}
    for r in rows:
        by.setdefault(r["d_over_n"], []).append(r["test_error"])
    pts = [(k, math.log(np.mean(v))) for k, v in sorted(by.items()) if np.mean(v) > 0]
    return stats.slope(*zip(*pts)) if len(pts) >= 2 else math.nan


def benign_in_d_over_n(rows, config, level):
    """K2: the slope of log(mean test error) against d/n."""
    units = stats.units_by(_valid(rows, config), ("seed",))
    return _estimate(stats.unit_interval(units, _log_error_slope, level), level)


def _n_slope(units) -> float:
    """Slope of test error against n with one intercept per d/n (least squares)."""
    return stats.within_slope(
        (r["d_over_n"], r["n"], r["test_error"])
        for u in units
        for r in u
        if r["d_over_n"] in (1.0, 2.0, 3.0)
    )


def depends_on_d_over_n_only(rows, config, level):
    """K3: the slope of test error against n at fixed d/n in {1, 2, 3}."""
    units = stats.units_by(_valid(rows, config), ("seed",))
    return _estimate(stats.unit_interval(units, _n_slope, level), level)


def harmful_without_signal(rows, config, level):
    """K4: the mean test error at gamma = 0, one interval per n (Bonferroni)."""
    rows = [r for r in _valid(rows, config) if r["gamma"] == 0]
    ns = sorted({r["n"] for r in rows})
    each = stats.bonferroni(level, len(ns))

    def mean_error(units):
        return float(np.mean([r["test_error"] for u in units for r in u]))

    return [
        _estimate(
            stats.unit_interval(
                stats.units_by([r for r in rows if r["n"] == n], ("seed",)), mean_error, each
            ),
            each,
            f"n={n}",
        )
        for n in ns
    ]


def beats_linear(rows, config, level):
    """K5: linear_test_error - test_error, paired by run, over cells with d/n <= 4."""
    rows = [r for r in _valid(rows, config) if r["d_over_n"] <= 4]

    def gap(units):
        return float(np.mean([r["linear_test_error"] - r["test_error"] for u in units for r in u]))

    return _estimate(stats.unit_interval(stats.units_by(rows, ("seed",)), gap, level), level)


CLAIMS = (
    Claim(
        "K1",
        "GD on the hinge loss reaches zero training error, fitting every noisy label",
        f"{SOURCE}, Theorem 3.1",
        "karhadkar-fig1",
        overfits,
        Criterion(low=0.98),
    ),
    Claim(
        "K2",
        "the test error decays exponentially in d/n: the slope of log(test error) "
        "against d/n is negative",
        f"{SOURCE}, Corollary 3.2.1",
        "karhadkar-fig1",
        benign_in_d_over_n,
        Criterion(high=0.0),
    ),
    Claim(
        "K3",
        "the test error depends on d/n, not on n: at fixed d/n its slope in n is "
        "within +-0.0005 per unit n",
        f"{SOURCE}, Figure 1",
        "karhadkar-fig1",
        depends_on_d_over_n_only,
        Criterion(-0.0005, 0.0005),
    ),
    Claim(
        "K4",
        "without signal (gamma = 0) the network overfits harmfully: test error within "
        "[0.45, 0.55] for every n",
        f"{SOURCE}, Theorem 3.4 and Figure 2",
        "karhadkar-fig2",
        harmful_without_signal,
        Criterion(0.45, 0.55),
    ),
    Claim(
        "K5",
        "the network's test error is below the max-margin linear classifier's on the "
        "same data (d/n <= 4)",
        f"{SOURCE}, Section 3",
        "karhadkar-fig1",
        beats_linear,
        Criterion(low=0.0),
    ),
)
