"""NTK concentration at initialisation as a checkable claim (`jaxbof verify`), JAX-free.

It reads the preset ntk-concentration: for n points uniform on S^{d-1} (one draw per (n, d),
shared by every width and seed) and the two-layer net at init of width M, one row per
(n, d, M, seed) with delta = ||H_M - H_inf||_op / ||H_inf||_op, the relative operator-norm
deviation of the empirical NTK Gram from the infinite-width one. H_M is a mean of M i.i.d.
rank-one terms (M/2 pairs under the antisymmetric init), so delta ~ C(n, d) M^(-1/2).

The unit of independent randomness is one Gram: the weights of each (width, seed) are their own
draw (keys fold in the width, then the seed), so a "seed" at two widths shares nothing, and
every row is independent of every other given its (n, d)'s points. The points are the fixed
design of each (n, d): they are not resampled, and the claim is about concentration over the
weights at those points. Intervals resample Grams (rows) whole (`stats.unit_interval`: a
percentile bootstrap from 10 Grams, below that a t-interval). The criterion is fixed here,
before any measurement:

S1  concentration at init: the least-squares slope of log(mean delta over the Grams of each
    width) against log M, fitted with a separate intercept for each (n, d) (the prefactor
    C(n, d) differs), lies within [-0.6, -0.4] (theory: -1/2).
"""

from __future__ import annotations

import math

import numpy as np

from jaxbof import stats
from jaxbof.contract import Claim, Criterion, Estimate

SOURCE = "Park et al. 2024, the NTK's concentration at initialisation (Jacot et al. 2018)"


def _pooled_slope(units) -> float:
    """Slope of log(mean delta) against log M, one intercept per (n, d) (least squares); nan
    where fewer than two widths are left."""
    means: dict = {}
    for u in units:
        for r in u:
            means.setdefault((r["n"], r["d"], r["width"]), []).append(float(r["rel_op_error"]))
    return stats.within_slope(
        (key[:2], math.log(key[2]), math.log(np.mean(v)))
        for key, v in sorted(means.items())
        if np.mean(v) > 0
    )


def concentration_slope(rows, config, level):
    """S1: the log-log slope of delta against width, pooled over (n, d)."""
    units = stats.units_by(rows, ("n", "d", "width", "seed"))
    got = stats.unit_interval(units, _pooled_slope, level)
    return Estimate(got.value, got.low, got.high, got.method + " (unit: one Gram)", "", level)


CLAIMS = (
    Claim(
        "S1",
        "at initialisation the empirical NTK concentrates on the infinite-width kernel "
        "like M^(-1/2): the log-log slope of ||H_M - H_inf||_op / ||H_inf||_op against the "
        "width M is within [-0.6, -0.4]",
        SOURCE,
        "ntk-concentration",
        concentration_slope,
        Criterion(-0.6, -0.4),
    ),
)
