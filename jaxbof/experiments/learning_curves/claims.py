"""The eigenlearning prediction of kernel ridge regression's learning curve as checkable claims
(`jaxbof verify`), JAX-free.

They read the preset learning-curves (its root part, the kernel ridge regression grid): x
uniform on S^2, the first-layer NTK, a target on the degrees 1, 2 and 4 with uniform label
noise, and for each training set (n, seed) one row per ridge with the measured excess risk
||f - f*||^2 (on fresh test points) beside the eigenlearning equations' prediction for that n
and ridge (the same in every row of a cell). The unit of independent randomness is a training
set with every ridge solved on it, (n, seed), resampled whole (`stats.unit_interval`: a
percentile bootstrap from 10 training sets per n, below that a t-interval over each set's own
gap). The statistic of a cell is the relative gap

    (predicted - measured) / measured,   measured = the mean excess risk over the training sets,

one interval per n >= 160 at the Bonferroni-corrected level, so that the family is at 95%: a
claim holds when every n holds and fails when any n fails. The criteria are fixed here, before
any measurement:

S3  with a ridge (ridge / n = 1e-2): the relative gap within +-10% at every n >= 160.
S4  without a ridge (interpolation): the relative gap within +-5% at every n >= 160. A known
    finding, expected to fail: the prediction sits 11 to 21% above the measurement, from
    n = 160 to 5120 (the equations miss the tempered noise amplification of ridgeless
    regression on the sphere's degenerate spectrum at fixed d).
"""

from __future__ import annotations

import math

import numpy as np

from jaxbof import stats
from jaxbof.contract import Claim, Criterion, Estimate

SOURCE = (
    "Simon, Dickens, Karkada and DeWeese 2021/2023 (the eigenlearning equations); "
    "Bordelon, Canatar and Pehlevan 2020"
)
N_MIN = 160  # the gap is claimed from here on: below it n sits among the first levels


def _gap_cells(ridge_over_n: float):
    """The estimate of a claim on the relative gap at one ridge, one interval per n >= N_MIN."""

    def estimate(rows, config, level):
        ns = sorted({r["n"] for r in rows if r["n"] >= N_MIN})
        if not ns:
            raise ValueError(f"no training sets with n >= {N_MIN}")
        each = stats.bonferroni(level, len(ns))

        def gap(units) -> float:
            mine = [r for u in units for r in u if r["ridge_over_n"] == ridge_over_n]
            measured = float(np.mean([r["excess_risk"] for r in mine])) if mine else math.nan
            predicted = (
                float(np.mean([r["predicted_excess_risk"] for r in mine])) if mine else math.nan
            )
            return (predicted - measured) / measured if measured > 0 else math.nan

        out = []
        for n in ns:
            units = stats.units_by([r for r in rows if r["n"] == n], ("n", "seed"))
            if not any(r["ridge_over_n"] == ridge_over_n for u in units for r in u):
                raise ValueError(f"no rows at ridge / n = {ridge_over_n:g} for n = {n}")
            got = stats.unit_interval(units, gap, each)
            out.append(
                Estimate(
                    got.value,
                    got.low,
                    got.high,
                    got.method + " (unit: a training set)",
                    f"n={n}",
                    each,
                )
            )
        return out

    estimate.__name__ = f"relative_gap_at_ridge_{ridge_over_n:g}"
    return estimate


with_ridge = _gap_cells(1e-2)
ridgeless = _gap_cells(0.0)

CLAIMS = (
    Claim(
        "S3",
        "with a ridge (ridge / n = 1e-2) the eigenlearning equations predict kernel "
        "ridge regression's excess risk: the relative gap (predicted - measured) / measured "
        "is within +-10% at every n >= 160",
        SOURCE,
        "learning-curves",
        with_ridge,
        Criterion(-0.10, 0.10),
    ),
    Claim(
        "S4",
        "without a ridge the eigenlearning equations predict the interpolating "
        "kernel's excess risk: the relative gap (predicted - measured) / measured is within "
        "+-5% at every n >= 160",
        SOURCE,
        "learning-curves",
        ridgeless,
        Criterion(-0.05, 0.05),
        expected="fails",
        reason="tempered noise amplification on a degenerate spectrum in "
        "fixed d: the prediction is 11 to 21% high from n = 160 to 5120",
    ),
)
