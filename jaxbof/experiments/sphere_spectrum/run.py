"""`jaxbof reproduce sphere-spectrum [--quick]`: the degree clusters of an analytic kernel's Gram
/ n on n uniform points of S^{d-1} against the kernel's eigenvalues mu_k, over n and seeds, in
float64 on the host (points from `jaxbof.sphere`, the Gram from `jaxbof.gram`, mu_k from
`jaxbof.spectra`), resumable (jaxbof.runner).

For each (d, kernel, seed) one draw of points, nested in n (point i from fold_in(key, i), so the
first n points of a seed are its draw at every smaller n: a learning curve per seed; the key
folds in the base seed, d and the seed, not the kernel, so kernels see the same points); at each
n all n eigenvalues of Gram / n by dense eigh (`np.linalg.eigvalsh`), sorted and grouped into
the degree levels in decreasing order of mu_k (`spectra.levels_of`: level k claims the next
N(d, k) eigenvalues). One row per level k <= k_max with mu_k > 0:

    n, d, kernel, seed, k, multiplicity N(d, k), mu_k, cluster_mean (the mean of the level's
    eigenvalues), rel_error = |cluster_mean - mu_k| / mu_k, spread = (max - min) / mu_k

Why the mean of a cluster, and why its error falls like 1/n: to first order in the sampling
fluctuation the sum of a level's eigenvalues moves by mu_k sum_j ((1/n) sum_i Y_kj(x_i)^2 - 1),
and by the addition theorem sum_j Y_kj(x)^2 = N(d, k) at every x, so that term vanishes for
every sample; what is left is second order, the leakage between levels, O(1/n). The individual
eigenvalues of a cluster do spread like n^(-1/2) (the `spread` column shows the contrast).

The default grid, as a theorist would choose it:
- d = 3 (S^2): the multiplicities N(3, k) = 2k + 1 grow slowly, so many complete levels fit
  among a few thousand eigenvalues, and it is the setting of the regression and learning-curve
  experiments;
- the first-layer NTK without a bias (u kappa_0(u)), the kernel those experiments train: its
  mu_k are closed forms (exact to ~1e-10, so the reference adds no error of its own); its odd
  levels k >= 3 are exactly 0 and carry no cluster;
- k_max = 8: the levels 1, 0, 2, 4, 6, 8 (in decreasing mu_k), clusters of 3, 1, 5, 9, 13 and
  17 eigenvalues, 48 in all. The leakage that sets the error grows with the levels above a
  cluster, so n must stay well above that count: the smallest n is 125 (quick) or 250, 2.6 and
  5 times it;
- n doubling, 250 to 4000 (five points over 1.2 decades; quick: 125 to 1000, four over 0.9):
  4000 is where a dense eigh still takes seconds on a laptop;
- 10 seeds (quick too), the fewest for a bootstrap over seeds (the unit of independent
  randomness: a seed's points at every n).
The whole preset takes about 40 s on a 2-core CPU (10 dense eigh at n = 4000 dominate), --quick
about 3 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from jaxbof.contract import HostStudy, Schema

SCHEMA = {
    "n": "int",
    "d": "int",
    "kernel": "str",
    "seed": "int",
    "k": "int",
    "multiplicity": "int",
    "mu_k": "float",
    "cluster_mean": "float",
    "rel_error": "float",
    "spread": "float",
}
KEYS = ("n", "d", "kernel", "seed", "k")


class Config(NamedTuple):
    """The grid: dimensions d (points on S^{d-1}), analytic kernels (`spectra.Kernel` names,
    with a bias b ~ N(0, 1) when `bias`), sizes n, seeds per (d, kernel), the levels k <= k_max
    recorded, and the base seed."""

    ds: tuple = (3,)
    kernels: tuple = ("ntk-first-layer",)
    ns: tuple = (250, 500, 1000, 2000, 4000)
    seeds: int = 10
    k_max: int = 8
    bias: bool = False
    seed: int = 0

    def validate(self) -> None:
        from jaxbof import spectra

        for kernel in self.kernels:
            spectra.Kernel(kernel)  # ValueError naming the known ones
        if min(self.ds) < 2 or min(self.ns) < 2 or self.seeds < 1 or self.k_max < 0:
            raise ValueError("sphere-spectrum: need d >= 2, n >= 2, seeds >= 1, k_max >= 0")


QUICK = Config(ns=(125, 250, 500, 1000))


def levels(config: Config, d: int, kernel: str):
    """(mu_0..mu_K of the kernel on S^{d-1}, K well past k_max so that every level whose mu
    exceeds a recorded one is there to be grouped first; the recorded levels k <= k_max with
    mu_k > 0)."""
    from jaxbof import spectra

    mu = spectra.eigenvalues(kernel, d, 4 * config.k_max + 16, bias=config.bias).eigenvalue
    if np.any(
        mu[4 * config.k_max + 1 :] > min((m for m in mu[: config.k_max + 1] if m > 0), default=0.0)
    ):
        raise ValueError(
            f"{kernel} on S^{d - 1}: a level past {4 * config.k_max} outweighs a "
            f"recorded one; lower k_max"
        )
    return mu, [k for k in range(config.k_max + 1) if mu[k] > 0]


def points(config: Config, d: int, seed: int, n: int):
    """The seed's n points on S^{d-1} (float64; its draw at any larger n holds them as a prefix).
    JAX must run in float64 (the runner enables it for this study)."""
    import jax

    from jaxbof import sphere

    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(config.seed), d), seed)
    x = sphere.uniform(key, n, d)
    if x.dtype != np.float64:
        raise ValueError("sphere-spectrum needs float64 points: enable jax_enable_x64")
    return np.asarray(x)


def rows_for(config: Config, d: int, kernel: str, seed: int, n: int, mu=None, x=None) -> list[dict]:
    """The rows of one Gram: (d, kernel, seed) at n points, one per recorded level. x: the
    seed's points at n or more (`points`; None: drawn here), of which the first n are used."""
    from jaxbof import gram, spectra

    mu, recorded = levels(config, d, kernel) if mu is None else mu
    x = points(config, d, seed, n) if x is None else x[:n]
    lam = np.linalg.eigvalsh(gram.analytic_gram(kernel, x, 0.0, config.bias)) / n
    fit = spectra.levels_of(lam, mu, d)
    missing = sorted(set(recorded) - {int(k) for k in fit.k})
    if missing:
        raise ValueError(
            f"n = {n} points on S^{d - 1}: the levels {missing} do not fit among "
            f"the {n} eigenvalues; raise n or lower k_max"
        )
    out, start = [], 0
    for k, m, target, mean in zip(fit.k, fit.multiplicity, fit.eigenvalue, fit.empirical_mean):
        cluster = fit.sorted_empirical[start : start + m]
        start += m
        if int(k) in recorded:
            out.append(
                {
                    "n": n,
                    "d": d,
                    "kernel": kernel,
                    "seed": seed,
                    "k": int(k),
                    "multiplicity": int(m),
                    "mu_k": float(target),
                    "cluster_mean": float(mean),
                    "rel_error": float(abs(mean - target) / target),
                    "spread": float((cluster.max() - cluster.min()) / target),
                }
            )
    return sorted(out, key=lambda r: r["k"])


def run(config: Config, on_rows: Callable[[list], None], skip: Iterable = ()) -> int:
    """Every Gram of the grid with rows missing from `skip` (keys n, d, kernel, seed, k),
    smallest n first; returns the Grams computed. Each seed's points are drawn once, at the
    largest n (one compiled draw per d)."""
    config.validate()
    skip = set(skip)
    done = 0
    for d in config.ds:
        drawn: dict = {}
        for kernel in config.kernels:
            mu = levels(config, d, kernel)
            for n in sorted(config.ns):
                for seed in range(config.seeds):
                    if all((n, d, kernel, seed, k) in skip for k in mu[1]):
                        continue
                    if seed not in drawn:
                        drawn[seed] = points(config, d, seed, max(config.ns))
                    on_rows(
                        [
                            r
                            for r in rows_for(config, d, kernel, seed, n, mu, drawn[seed])
                            if (n, d, kernel, seed, r["k"]) not in skip
                        ]
                    )
                    done += 1
    return done


def study(quick: bool) -> HostStudy:
    """The default grid (quick: `QUICK`), as a study the runner resumes."""
    config = QUICK if quick else Config()
    grams = len(config.ds) * len(config.kernels) * len(config.ns) * config.seeds

    def compute(on_rows, stored):
        run(config, on_rows, skip={tuple(r[c] for c in KEYS) for r in stored})

    return HostStudy(
        "sphere-spectrum",
        "sphere-spectrum" + ("-quick" if quick else ""),
        f"{grams} Grams, n up to {max(config.ns)}, dense eigh",
        config._asdict(),
        Schema(SCHEMA, KEYS, flags={}),
        compute,
        x64=True,
    )


def table(rows, config=None) -> list[str]:
    """Per (d, kernel, k): the log-log slope of the mean relative error of the cluster mean
    against n, and that mean at each n; then the slope pooled over the levels (S2's)."""
    from jaxbof.experiments.sphere_spectrum import claims

    ns = sorted({r["n"] for r in rows})
    lines = ["d,kernel,k,multiplicity,slope," + ",".join(f"rel_error_n={n}" for n in ns)]
    for (d, kernel, k), fit, means in claims.per_level(rows):
        m = next(r["multiplicity"] for r in rows if (r["d"], r["kernel"], r["k"]) == (d, kernel, k))
        lines.append(
            f"{d},{kernel},{k},{m},{fit.slope:.3f},"
            + ",".join(f"{means[n]:.3g}" if n in means else "" for n in ns)
        )
    lines.append(
        f"slope pooled over the levels (one intercept each): "
        f"{claims.pooled_slope([rows]):.3f} (theory -1)"
    )
    return lines
