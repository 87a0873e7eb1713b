"""Figures from stored results (matplotlib only; reads rows, never trains).

`plot_dir` draws what a results directory supports, through the plug-in registered for the
experiment kind in its config.json (`jaxbof.experiments.plugin`); `spectrum` draws a kernel's
sphere spectrum for `jaxbof spectrum`. NumPy and matplotlib only at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, store


def plot_dir(directory, out=None) -> list[str]:
    """Write the pictures DIR's results support into `out` (default DIR); returns their paths.
    Dispatches on config["experiment"]["kind"] to that plug-in's `figures`, never on column
    names; a directory without a config, or of an unknown kind, is a one-line ValueError."""
    from jaxbof import experiments  # the registry: JAX-free

    directory = Path(directory)
    out = Path(out) if out is not None else directory
    config = store.load_config(directory)
    kind = experiments.kind_of(config, directory)
    figures = experiments.figures_of(experiments.plugin(kind))
    if figures is None:
        raise ValueError(f"{directory}: experiment {kind!r} draws no figures")
    return figures(directory, config, out)


def summary_figure(directory, config, out) -> list[str]:
    """The default figure of a plug-in with a cell: each measured float column (mean and
    standard error over seeds, flagged runs left out) against the first key column that takes
    several values, one line per value of the other keys; DIR/<kind>.png."""
    from jaxbof import experiments, stats

    rows = store.load_results(directory)
    by, measured, flags = experiments.summary_columns(config, rows)
    axis = next((c for c in by if len({r[c] for r in rows}) > 1), by[0] if by else None)
    if axis is None or not measured:
        return []
    rest = [c for c in by if c != axis]
    cols = min(3, len(measured))
    rows_ = -(-len(measured) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.4 * rows_), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_, cols)).ravel()
    for ax in axes[len(measured) :]:
        ax.set_visible(False)
    for ax, column in zip(axes, measured):
        summary = stats.aggregate(rows, [*rest, axis], column, flags)
        for i, line in enumerate(sorted({key[:-1] for key in summary})):
            keys = [k for k in summary if k[:-1] == line]
            ax.errorbar(
                [k[-1] for k in keys],
                [summary[k].mean for k in keys],
                [summary[k].sem for k in keys],
                fmt="o-",
                ms=3,
                color=f"C{i % 10}",
                label=", ".join(f"{c}={v}" for c, v in zip(rest, line)) or None,
            )
        ax.set_xlabel(axis)
        ax.set_ylabel(column)
        if rest:
            ax.legend(fontsize=7)
    kind = config.get("experiment", {}).get("kind", "results")
    fig.suptitle(f"{kind}: mean and standard error over seeds", fontsize=9)
    return [draw.save(fig, Path(out) / f"{kind}.png")]


# ----------------------------------------------------------------------------- sphere spectra


def spectrum(
    k,
    multiplicity,
    eigenvalue,
    path,
    empirical=None,
    title: str | None = None,
    max_index: int | None = None,
) -> str:
    """Kernel eigenvalues on the sphere against their index, log scale: the analytic staircase
    (level mu_k repeated N(d, k) times, levels in decreasing order, zero levels left out) and,
    if given, the sorted eigenvalues of an empirical Gram / n as points."""
    k, mult, mu = (np.asarray(a) for a in (k, multiplicity, eigenvalue))
    order = [i for i in np.argsort(-mu, kind="stable") if mu[i] > 0 and np.isfinite(mult[i])]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    start = 0
    limit = max_index or (len(empirical) if empirical is not None else None)
    for j, i in enumerate(order):
        stop = start + int(mult[i])
        if limit is not None and start >= limit:
            break
        ax.hlines(
            mu[i],
            start + 1,
            min(stop, limit or stop) + 0.999,
            colors="C0",
            lw=2,
            label="analytic mu_k, repeated N(d, k) times" if j == 0 else None,
        )
        if j < 8:
            ax.annotate(
                f"k={int(k[i])}",
                (start + 1, mu[i]),
                fontsize=7,
                xytext=(2, 3),
                textcoords="offset points",
            )
        start = stop
    if empirical is not None:
        lam = np.asarray(empirical, np.float64)
        idx = np.arange(1, len(lam) + 1)
        pos = lam > 0
        ax.plot(idx[pos], lam[pos], ".", color="C3", ms=3, label="empirical Gram / n eigenvalues")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue index (decreasing order)")
    ax.set_ylabel("eigenvalue")
    ax.legend(fontsize=8)
    ax.set_title("Kernel spectrum on the sphere" + (f"\n{title}" if title else ""), fontsize=9)
    return draw.save(fig, path)


def level_errors(series, path, title: str | None = None, spread=None) -> str:
    """Relative error |cluster mean - mu_k| / mu_k of the empirical degree clusters against the
    number of points n, log-log, one line per (series, level): `series` maps a label to
    {k: (n_values, errors)}; `spread`, the same for (max - min) / mu_k of each cluster, in a
    second panel. Dotted n^(-1/2) and dash-dotted n^(-1) guides through each panel's first
    line's first point."""
    panels = [("|cluster mean - mu_k| / mu_k", series)]
    if spread:
        panels.append(("cluster spread (max - min) / mu_k", spread))
    fig = Figure(figsize=(6.5 * len(panels), 5.2), layout="constrained")
    styles = ["-o", "--s", ":^", "-.v"]
    for ax, (ylabel, table) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        first, n_hi = None, 0.0
        for j, (label, levels) in enumerate(table.items()):
            for k, (ns, errs) in sorted(levels.items()):
                ns, errs = np.asarray(ns, float), np.asarray(errs, float)
                ax.plot(
                    ns,
                    errs,
                    styles[j % len(styles)],
                    color=f"C{int(k) % 10}",
                    ms=4,
                    label=f"{label}, k={k}",
                )
                if first is None and len(ns):
                    first = (ns[0], errs[0])
                n_hi = max([n_hi, *ns])
        if first is not None:
            n0, e0 = first
            grid = np.geomspace(n0, n_hi, 50)
            ax.plot(grid, e0 * np.sqrt(n0 / grid), "k:", lw=1, label="n^(-1/2)")
            ax.plot(grid, e0 * (n0 / grid), "k-.", lw=1, label="n^(-1)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("points n")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(
        "Degree clusters of Gram / n against mu_k" + (f"\n{title}" if title else ""), fontsize=8
    )
    return draw.save(fig, path)
