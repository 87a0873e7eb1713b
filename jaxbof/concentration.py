"""NTK concentration at initialization (Park et al. 2024): the empirical NTK against its limit.

For n points uniform on S^{d-1} and the two-layer net of `jaxbof.ntk` at init (width M), the
relative operator-norm deviation

    delta(M) = ||H_M - H_inf||_op / ||H_inf||_op

of the empirical NTK Gram H_M (`ntk.structured_ntk`) from the infinite-width Gram H_inf
(`ntk.analytic_ntk`) is a mean of M i.i.d. (or, antisymmetric, M/2 pairs of equal) rank-one
terms, so delta ~ C(n, d) M^(-1/2). Everything here runs in the dtype JAX gives float (float64 when
the entry point enables x64, which the CLI and the tests do): the host eigensolver is float64.

Rows are produced one (n, d, width, seed) at a time and handed to a callback, so a caller that
writes them as they come loses nothing when interrupted. Deterministic from the coordinates:
points `sphere.uniform(fold_in(key, n, d), n, d)` (point i from fold_in(., i)), weights
`ntk.init_two_layer(fold_in(points key, width, seed), ...)` (neuron j from fold_in(., j)).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxbof import ntk, sphere, stats

__all__ = [
    "COLUMNS",
    "Config",
    "SCHEMA",
    "Slope",
    "deviation",
    "fit_slopes",
    "run",
    "sphere_points",
]

# the results schema {column: type} for store.ResultsWriter, in CSV order
SCHEMA = {
    "n": "int",
    "d": "int",
    "width": "int",
    "seed": "int",
    "rel_op_error": "float",
    "h_inf_op_norm": "float",
}
COLUMNS = tuple(SCHEMA)


class Config(NamedTuple):
    """One concentration study: (n, d) pairs, widths, seeds and the kernel measured."""

    nd: tuple[tuple[int, int], ...] = ((200, 10), (500, 50), (1000, 200))
    widths: tuple[int, ...] = tuple(2**j for j in range(5, 15))
    seeds: int = 3
    layers: ntk.Layers = ntk.Layers.FIRST
    alpha: float = 0.0
    bias: bool = False
    antisymmetric: bool = True
    seed: int = 0

    def validate(self) -> None:
        for n, d in self.nd:
            if n < 2 or d < 2:
                raise ValueError(f"(n, d) = ({n}, {d}): need n >= 2 and d >= 2")
        for m in self.widths:
            if m < 2 or (self.antisymmetric and m % 2):
                raise ValueError(
                    f"width {m}: must be >= 2"
                    + (" and even (antisymmetric init)" if self.antisymmetric else "")
                )
        if self.seeds < 1:
            raise ValueError(f"seeds = {self.seeds}: must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha = {self.alpha}: must be in [0, 1]")


QUICK = Config(nd=((100, 10), (200, 40)), widths=tuple(2**j for j in range(5, 12)), seeds=2)


def sphere_points(key, n: int, d: int) -> jax.Array:
    """Thin alias of `sphere.uniform(key, n, d)` (n points uniform on S^{d-1}), kept for
    notebooks/ntk_spectra.ipynb; new code should call `jaxbof.sphere.uniform`."""
    return sphere.uniform(key, n, d)


def _op_norm(A) -> float:
    A = np.asarray(A, np.float64)
    return float(np.max(np.abs(np.linalg.eigvalsh(0.5 * (A + A.T)))))


@functools.partial(jax.jit, static_argnames=("width", "layers", "bias", "antisymmetric"))
def _ntk_at_init(key, x, alpha, *, width: int, layers: ntk.Layers, bias: bool, antisymmetric: bool):
    """H_M of one draw of the width-M net at init: one compiled program per (n, d, M, kernel),
    instead of one per primitive and shape when run op by op."""
    params = ntk.init_two_layer(
        key, width, x.shape[1], bias=bias, antisymmetric=antisymmetric, dtype=x.dtype
    )
    return ntk.structured_ntk(params, x, layers=layers, alpha=alpha)


def deviation(
    key,
    x,
    width: int,
    H_inf,
    *,
    layers: ntk.Layers = ntk.Layers.FIRST,
    alpha: float = 0.0,
    bias: bool = False,
    antisymmetric: bool = True,
) -> float:
    """||H_M - H_inf||_op / ||H_inf||_op for one draw of the width-M net at init."""
    H = _ntk_at_init(
        key, x, alpha, width=width, layers=layers, bias=bias, antisymmetric=antisymmetric
    )
    return _op_norm(np.asarray(H) - np.asarray(H_inf)) / _op_norm(H_inf)


def run(
    config: Config, on_row: Callable[[dict], None] | None = None, skip: Iterable[tuple] = ()
) -> list[dict]:
    """Rows (dicts with COLUMNS) for every (n, d) x width x seed not in `skip` (a set of
    (n, d, width, seed)); on_row(row) is called after each one."""
    config.validate()
    skip = set(skip)
    key = jax.random.PRNGKey(config.seed)
    rows = []
    for n, d in config.nd:
        kx = jax.random.fold_in(jax.random.fold_in(key, n), d)
        x = sphere.uniform(kx, n, d)
        H_inf = ntk.analytic_ntk(x, layers=config.layers, alpha=config.alpha, bias=config.bias)
        h_norm = _op_norm(H_inf)
        for width in config.widths:
            for seed in range(config.seeds):
                if (n, d, width, seed) in skip:
                    continue
                kw = jax.random.fold_in(jax.random.fold_in(kx, width), seed)
                rel = deviation(
                    kw,
                    x,
                    width,
                    H_inf,
                    layers=config.layers,
                    alpha=config.alpha,
                    bias=config.bias,
                    antisymmetric=config.antisymmetric,
                )
                row = dict(n=n, d=d, width=width, seed=seed, rel_op_error=rel, h_inf_op_norm=h_norm)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


class Slope(NamedTuple):
    """Least-squares fit log(mean delta) = log(C) + slope log(M) over the widths of one (n, d)."""

    n: int
    d: int
    slope: float
    prefactor: float
    widths: int


def fit_slopes(rows: Sequence[dict]) -> list[Slope]:
    """One `Slope` per (n, d) with at least two widths; the mean over seeds at each width."""
    out = []
    for n, d in sorted({(int(r["n"]), int(r["d"])) for r in rows}):
        by_m: dict[int, list[float]] = {}
        for r in rows:
            if int(r["n"]) == n and int(r["d"]) == d:
                by_m.setdefault(int(r["width"]), []).append(float(r["rel_op_error"]))
        if len(by_m) < 2:
            continue
        m = np.array(sorted(by_m), np.float64)
        fit = stats.fit_loglog_slope(m, [np.mean(by_m[int(w)]) for w in m])
        out.append(Slope(n, d, fit.slope, fit.prefactor, len(m)))
    return out
