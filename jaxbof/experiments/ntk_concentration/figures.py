"""The NTK concentration figure: ||H_M - H_inf||_op / ||H_inf||_op against width. NumPy and
matplotlib only (the slope fits come from jaxbof.concentration, imported where used)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw


def concentration(rows, slopes, path, title: str | None = None) -> str:
    """||H_M - H_inf||_op / ||H_inf||_op against width M on log-log axes, one line per (n, d)
    (mean over seeds, the seeds as points), with each fitted slope and a reference M^(-1/2)."""
    fig = Figure(figsize=(6.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    fits = {(s.n, s.d): s for s in slopes}
    for i, (n, d) in enumerate(sorted({(int(r["n"]), int(r["d"])) for r in rows})):
        mine = [r for r in rows if int(r["n"]) == n and int(r["d"]) == d]
        m = np.array([float(r["width"]) for r in mine])
        y = np.array([float(r["rel_op_error"]) for r in mine])
        ax.plot(m, y, ".", color=f"C{i}", alpha=0.4, ms=4)
        widths = np.unique(m)
        mean = np.array([y[m == w].mean() for w in widths])
        fit = fits.get((n, d))
        label = f"n={n}, d={d}" + (f": slope {fit.slope:.3f}" if fit else "")
        ax.plot(widths, mean, "o-", color=f"C{i}", ms=4, label=label)
        if fit:
            ax.plot(widths, fit.prefactor * widths**fit.slope, ":", color=f"C{i}", lw=1)
    if rows:
        m = np.unique([float(r["width"]) for r in rows])
        y0 = np.median([float(r["rel_op_error"]) for r in rows if float(r["width"]) == m[0]])
        ax.plot(m, y0 * (m / m[0]) ** -0.5, "k--", lw=1, label="M^(-1/2) reference")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width M")
    ax.set_ylabel("||H_M - H_inf||_op / ||H_inf||_op")
    ax.legend(fontsize=8)
    ax.set_title(
        "NTK concentration at initialization" + (f"\n{title}" if title else ""), fontsize=9
    )
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    from jaxbof.concentration import fit_slopes  # imports JAX

    rows = draw.results(directory)
    title = draw.describe(config.get("experiment"), Path(directory).name)
    return [concentration(rows, fit_slopes(rows), Path(out) / "concentration.png", title=title)]
