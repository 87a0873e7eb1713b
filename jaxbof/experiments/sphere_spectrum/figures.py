"""The sphere-spectrum figure: the relative error of each degree cluster's mean against n,
log-log, one line per level k with its fitted slope (the seeds as points), beside the spread of
the clusters' eigenvalues. NumPy and matplotlib only (no JAX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from jaxbof import draw
from jaxbof.experiments.sphere_spectrum import claims


def cluster_errors(rows, path, title: str | None = None) -> str:
    """Left: |cluster mean - mu_k| / mu_k against n (mean over seeds, each seed a point, the
    fitted slope per k, an n^(-1) guide); right: the spread (max - min) / mu_k of each cluster
    of more than one eigenvalue (n^(-1/2) guide). One colour per (d, kernel, k)."""
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax, sx = fig.subplots(1, 2)
    groups = claims.per_level(rows)
    several = len({(d, kernel) for (d, kernel, _), _, _ in groups}) > 1
    for i, ((d, kernel, k), fit, means) in enumerate(groups):
        mine = [r for r in rows if (r["d"], r["kernel"], r["k"]) == (d, kernel, k)]
        n = np.array([r["n"] for r in mine], float)
        label = (f"d={d} {kernel}, " if several else "") + f"k={k}"
        ax.plot(n, [r["rel_error"] for r in mine], ".", color=f"C{i % 10}", alpha=0.3, ms=3)
        ax.plot(
            list(means),
            list(means.values()),
            "o-",
            color=f"C{i % 10}",
            ms=4,
            label=f"{label}: slope {fit.slope:.2f}",
        )
        if mine[0]["multiplicity"] > 1:
            ns = sorted(set(n))
            spread = [np.mean([r["spread"] for r in mine if r["n"] == v]) for v in ns]
            sx.plot(ns, spread, "o-", color=f"C{i % 10}", ms=4, label=label)
    for a, power, name in ((ax, 1.0, "n^(-1)"), (sx, 0.5, "n^(-1/2)")):
        lines = [ln for ln in a.get_lines() if ln.get_linestyle() == "-"]
        if lines:
            x0, y0 = lines[0].get_xdata()[0], lines[0].get_ydata()[0]
            grid = np.geomspace(x0, max(max(ln.get_xdata()) for ln in lines), 50)
            a.plot(grid, y0 * (x0 / grid) ** power, "k--", lw=1, label=name + " guide")
        a.set(xscale="log", yscale="log", xlabel="points n")
        a.xaxis.set_minor_formatter(NullFormatter())  # n is read off the decades and the points
        a.legend(fontsize=7)
    ax.set_ylabel("|cluster mean - mu_k| / mu_k")
    ax.set_title(
        f"cluster means: slope pooled over k {claims.pooled_slope([rows]):.3f} (theory -1)",
        fontsize=8,
    )
    sx.set_ylabel("cluster spread (max - min) / mu_k")
    sx.set_title("single eigenvalues spread like n^(-1/2)", fontsize=8)
    fig.suptitle(
        "Degree clusters of Gram / n against mu_k" + (f"\n{title}" if title else ""), fontsize=9
    )
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    rows = draw.results(directory)
    title = draw.describe(config.get("experiment"), Path(directory).name)
    return [cluster_errors(rows, Path(out) / "cluster_errors.png", title=title)]
