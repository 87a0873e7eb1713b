"""The sphere spectrum as a checkable claim (`jaxbof verify`), JAX-free.

It reads the preset sphere-spectrum: for n points uniform on S^{d-1} and an analytic dot-product
kernel, the eigenvalues of Gram / n grouped into the degree levels (level k: N(d, k) of them, in
decreasing order of mu_k), one row per (n, d, kernel, seed, k) with the relative error
rel_error = |cluster mean - mu_k| / mu_k of the level's mean eigenvalue. By the addition theorem
(sum_j Y_kj(x)^2 = N(d, k) at every x) the first-order fluctuation of a level's eigenvalue sum
vanishes for every sample, so the error of the cluster mean is second order: O(1/n), not the
O(n^(-1/2)) of a single eigenvalue.

The unit of independent randomness is a seed: its points, nested in n (the first n points of a
seed are its draw at every smaller n), with every n and level computed on them. Intervals
resample seeds whole (`stats.unit_interval`: a percentile bootstrap from 10 seeds, below that a
t-interval over each seed's own slope). The criterion is fixed here, before any measurement:

S2  the least-squares slope of log(mean rel_error over the seeds) against log n, fitted with a
    separate intercept for each level k (and each d and kernel of the preset), lies within
    [-1.25, -0.75] (the addition theorem predicts -1).
"""

from __future__ import annotations

import math

import numpy as np

from jaxbof import stats
from jaxbof.contract import Claim, Criterion, Estimate

SOURCE = (
    "Koltchinskii and Gine 2000 (the spectrum of Gram / n converges to the kernel's); the "
    "1/n rate of a degree cluster's mean from the addition theorem of spherical harmonics; "
    "mu_k in closed form after Bach 2017 and Bietti and Mairal 2019"
)


def _means(units) -> dict:
    """{(d, kernel, k): {n: mean rel_error over the units' rows}}."""
    got: dict = {}
    for u in units:
        for r in u:
            got.setdefault((r["d"], r["kernel"], r["k"]), {}).setdefault(r["n"], []).append(
                float(r["rel_error"])
            )
    return {
        g: {n: float(np.mean(v)) for n, v in sorted(by_n.items())}
        for g, by_n in sorted(got.items())
    }


def per_level(rows) -> list:
    """[((d, kernel, k), stats.LogSlope of mean rel_error against n, {n: mean}), ...]."""
    return [
        (g, stats.fit_loglog_slope(list(m), list(m.values())), m) for g, m in _means([rows]).items()
    ]


def pooled_slope(units) -> float:
    """Slope of log(mean rel_error) against log n, one intercept per (d, kernel, k) (least
    squares over the positive means); nan where fewer than two n are left."""
    return stats.within_slope(
        (g, math.log(n), math.log(e))
        for g, m in _means(units).items()
        for n, e in m.items()
        if e > 0
    )


def cluster_mean_slope(rows, config, level):
    """S2: the log-log slope of the cluster means' relative error against n, pooled over the
    levels."""
    got = stats.unit_interval(stats.units_by(rows, ("seed",)), pooled_slope, level)
    return Estimate(
        got.value, got.low, got.high, got.method + " (unit: a seed's points)", "", level
    )


CLAIMS = (
    Claim(
        "S2",
        "the degree clusters of an analytic kernel's Gram / n on uniform points of "
        "the sphere approach mu_k at rate 1/n: the log-log slope of the cluster mean's "
        "relative error against n is within [-1.25, -0.75]",
        SOURCE,
        "sphere-spectrum",
        cluster_mean_slope,
        Criterion(-1.25, -0.75),
    ),
)
