"""The theory's phase boundary against the measured test errors, JAX-free.

Kou et al. (ReLU, q = 1): benign above n ||mu||^4 = C d sigma_p^4, so the signal strength where
the test error falls to a level crosses at ||mu||_c = (C d sigma_p^4 / n)^(1/4). Cao et al.
(ReLU^q, q > 2): the boundary is n SNR^q = C with SNR = ||mu|| / (sigma_p sqrt(d)), i.e.
||mu||_c = sigma_p sqrt(d) (C / n)^(1/q). C is not given by the theory: it is fitted here to the
measured crossings of a stated level (the median of the C each crossing implies), and the
exponent of ||mu||_c in d (or n) is fitted freely, to compare with the theory's 1/4 (or 1/2 in d,
-1/q in n).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from jaxbof import stats


class Crossing(NamedTuple):
    n: int
    d: int
    signal: float  # ||mu|| where the mean test error first falls to the level (interpolated)
    sigma_p: float
    q: float


class Boundary(NamedTuple):
    level: float
    C: float  # median of the constants implied by the crossings
    count: int
    exponent: float  # fitted d-exponent (n-exponent when d is fixed) of the crossing ||mu||
    theory: float  # the theory's exponent
    axis: str  # "d" or "n"
    law: str
    sigma_p: float
    q: float

    def constant_of(self, c: Crossing) -> float:
        return constant(c)

    def signal_at(self, n, d) -> np.ndarray:
        """||mu|| on the fitted boundary at (n, d)."""
        n, d = np.asarray(n, np.float64), np.asarray(d, np.float64)
        if self.q == 1:
            return (self.C * d * self.sigma_p**4 / n) ** 0.25
        return self.sigma_p * np.sqrt(d) * (self.C / n) ** (1 / self.q)


def constant(c: Crossing) -> float:
    if c.q == 1:
        return c.n * c.signal**4 / (c.d * c.sigma_p**4)
    return c.n * (c.signal / (c.sigma_p * math.sqrt(c.d))) ** c.q


def protocol_of(rows, protocol=None) -> tuple[float, float, float]:
    """(sigma_p, q, noise rate p) from a protocol dict (config.json) or the defaults."""
    protocol = protocol or {}
    return (
        float(protocol.get("sigma_p", 1.0)),
        float(protocol.get("q", 1.0)),
        float(protocol.get("noise_rate", 0.1)),
    )


def default_level(p: float) -> float:
    """Halfway between the Bayes error p and chance (0.5): the level whose crossing is
    measured. Kou et al.'s harmful regime has test error >= p + 0.1."""
    return (p + 0.5) / 2


def crossings(rows, level: float, protocol=None) -> list[Crossing]:
    """Per (n, d): the smallest ||mu|| at which the mean test error (valid runs) is <= level,
    linearly interpolated from the grid point before it; none if it never falls that low or
    is already there at the smallest ||mu||."""
    sigma_p, q, _ = protocol_of(rows, protocol)
    agg = stats.aggregate(rows, by=("n", "d", "signal"), value="test_error")
    out = []
    for n, d in sorted({(k[0], k[1]) for k in agg}):
        pts = sorted(
            (k[2], s.mean)
            for k, s in agg.items()
            if (k[0], k[1]) == (n, d) and math.isfinite(s.mean)
        )
        for (s0, e0), (s1, e1) in zip(pts, pts[1:]):
            if e0 > level >= e1:
                x = s0 + (s1 - s0) * (e0 - level) / (e0 - e1)
                if x > 0:
                    out.append(Crossing(int(n), int(d), float(x), sigma_p, q))
                break
    return out


def fit_boundary(rows, level: float | None = None, protocol=None) -> Boundary:
    sigma_p, q, p = protocol_of(rows, protocol)
    level = default_level(p) if level is None else level
    cs = crossings(rows, level, protocol)
    C = float(np.median([constant(c) for c in cs])) if cs else math.nan
    axis = "d" if len({c.d for c in cs}) >= len({c.n for c in cs}) else "n"
    x = [c.d if axis == "d" else c.n for c in cs]
    slope = stats.fit_loglog_slope(x, [c.signal for c in cs]).slope
    if q == 1:
        theory = 0.25 if axis == "d" else -0.25
        law = "n ||mu||^4 = C d sigma_p^4"
    else:
        theory = 0.5 if axis == "d" else -1 / q
        law = f"n SNR^{q:g} = C"
    return Boundary(level, C, len(cs), slope, theory, axis, law, sigma_p, q)
