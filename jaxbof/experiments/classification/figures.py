"""Figures of the classification experiment (Karhadkar et al.): the Figure 1 heatmap over
(n, d/n), the Figure 2 gamma curve, test error against d/n with a fitted exponential rate, and
test error against the SNR. Each function writes one PNG and returns its path; `heatmap_table`
and `heatmap_figure` expose what the heatmap draws, for tests and notebooks. NumPy and
matplotlib only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from jaxbof import draw, stats
from jaxbof.experiments.classification.cells import POOLABLE


class HeatmapTable(NamedTuple):
    """What the heatmap draws: rows of the arrays are d/n values, columns n values."""

    n_x: tuple
    dn_y: tuple
    mean_yx: np.ndarray  # mean over valid runs; nan where there is none
    count_yx: np.ndarray  # valid runs per cell
    flagged_yx: np.ndarray  # runs left out per cell (not converged or diverged)
    labels_yx: list  # annotation of each cell: 3 significant digits, "0", "n/a"; "*" if flagged

    @property
    def zero_yx(self) -> np.ndarray:
        return self.mean_yx == 0


def heatmap_table(rows, value: str = "test_error") -> HeatmapTable:
    """Mean of `value` per (n, d/n) cell over valid runs (stats.aggregate), with annotations."""
    agg = stats.aggregate(rows, by=("n", "d_over_n"), value=value)
    n_x = tuple(sorted({k[0] for k in agg}))
    dn_y = tuple(sorted({k[1] for k in agg}))
    shape = (len(dn_y), len(n_x))
    mean = np.full(shape, np.nan)
    count = np.zeros(shape, int)
    flagged = np.zeros(shape, int)
    for (n, r), s in agg.items():
        i, j = dn_y.index(r), n_x.index(n)
        mean[i, j], count[i, j], flagged[i, j] = s.mean, s.count, s.flagged
    labels = []
    for i in range(shape[0]):
        line = []
        for j in range(shape[1]):
            m = mean[i, j]
            text = "n/a" if count[i, j] == 0 else "0" if m == 0 else f"{m:.3g}"
            line.append(text + ("*" if flagged[i, j] else ""))
        labels.append(line)
    return HeatmapTable(n_x, dn_y, mean, count, flagged, labels)


def heatmap_figure(
    table: HeatmapTable, *, value: str = "test_error", title: str | None = None
) -> Figure:
    """Figure 1: n across, d/n up, mean per cell on a log colour scale.

    Exact zeros (a log scale has no place for them) are drawn in draw.ZERO_COLOUR with the label
    "0"; cells without a valid run in draw.MISSING_COLOUR ("n/a"); '*' marks flagged runs.
    The three layers carry gids "positive_cells", "zero_cells", "missing_cells".
    """
    ny, nx = table.mean_yx.shape
    fig = Figure(figsize=(max(0.8 * nx + 3.2, 7.0), 0.5 * ny + 2.6), layout="constrained")
    ax = fig.add_subplot()
    xe, ye = np.arange(nx + 1), np.arange(ny + 1)
    mean = table.mean_yx
    positive = np.isfinite(mean) & (mean > 0)
    missing = table.count_yx == 0
    if np.any(mean < 0):
        raise ValueError(f"{value} has negative means: no log colour scale")
    edge = dict(edgecolors="0.75", linewidth=0.5)
    norm = None
    if positive.any():
        lo, hi = mean[positive].min(), mean[positive].max()
        norm = LogNorm(vmin=lo if lo < hi else hi / 10, vmax=hi)
        mesh = ax.pcolormesh(
            xe, ye, np.ma.masked_where(~positive, mean), cmap=draw.CMAP, norm=norm, **edge
        )
        mesh.set_gid("positive_cells")
        fig.colorbar(mesh, ax=ax, label=f"mean {value} (log scale; white = exactly 0)")
    for gid, mask, colour in (
        ("zero_cells", table.zero_yx, draw.ZERO_COLOUR),
        ("missing_cells", missing, draw.MISSING_COLOUR),
    ):
        if mask.any():
            layer = ax.pcolormesh(
                xe,
                ye,
                np.ma.masked_where(~mask, np.ones_like(mean)),
                cmap=ListedColormap([colour]),
                **edge,
            )
            layer.set_gid(gid)
    lut = colormaps[draw.CMAP]
    for i in range(ny):
        for j in range(nx):
            colour = "black"
            if positive[i, j]:
                rgb = lut(norm(mean[i, j]))[:3]  # pyright: ignore[reportOptionalCall] - a colormap
                luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
                colour = "black" if luma > 0.5 else "white"
            ax.text(
                j + 0.5,
                i + 0.5,
                table.labels_yx[i][j],
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(np.arange(nx) + 0.5, [f"{n:g}" for n in table.n_x])
    ax.set_yticks(np.arange(ny) + 0.5, [f"{r:g}" for r in table.dn_y])
    ax.set_xlabel("n (training samples)")
    ax.set_ylabel("d / n")
    ax.set_xlim(0, nx)
    ax.set_ylim(0, ny)
    handles = [
        Patch(facecolor=draw.ZERO_COLOUR, edgecolor="0.4", label="0: no test error in any trial")
    ]
    if missing.any():
        handles.append(Patch(facecolor=draw.MISSING_COLOUR, label="n/a: no converged run"))
    k = int(table.flagged_yx.sum())
    if k:
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="$*$",
                color="black",
                label=f"*: cell has runs not converged/diverged ({k} in all), "
                "excluded from its mean",
            )
        )
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False)
    trials = set((table.count_yx + table.flagged_yx).ravel().tolist())
    per_cell = f"{trials.pop()} trials per cell" if len(trials) == 1 else "trials per cell vary"
    main = f"Mean {value} ({per_cell}; labels: 3 significant digits)"
    ax.set_title(main + (f"\n{title}" if title else ""), fontsize=9)
    return fig


def heatmap(rows, path, value: str = "test_error", title: str | None = None) -> str:
    """Figure 1 of the paper as a PNG at `path`; `title` adds a line (e.g. the MC precision)."""
    sub = draw.subtitle(title, rows, ("n", "d_over_n"), axes=POOLABLE)
    return draw.save(
        heatmap_figure(heatmap_table(rows, value), value=value, title=sub or None), path
    )


# ----------------------------------------------------------------------------- Figure 2


def gamma_curve(rows, path, title: str | None = None) -> str:
    """Figure 2: mean test error against gamma, one line per n (per (n, d/n) if d/n varies),
    error bars = standard error over trials (the published figure has none)."""
    by_dn = len({r["d_over_n"] for r in rows}) > 1
    agg = stats.aggregate(rows, by=("n", "d_over_n", "gamma"), value="test_error")
    lines: dict = {}
    for (n, r, g), s in agg.items():
        lines.setdefault((n, r) if by_dn else n, []).append((g, s))
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for key, pts in sorted(lines.items()):
        g = np.array([p[0] for p in pts])
        m = np.array([p[1].mean for p in pts])
        e = np.nan_to_num(np.array([p[1].sem for p in pts]))
        label = f"n = {key[0]}, d/n = {key[1]:g}" if by_dn else f"n = {key}"
        ax.errorbar(g, m, yerr=e, marker="o", ms=3, capsize=3, label=label)
    ax.set_xlabel(r"signal strength $\gamma$")
    ax.set_ylabel("test error")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    draw.footnote(fig, [draw.flag_note(rows)])
    main = "Test error vs signal strength; error bars: standard error over trials"
    ax.set_title(
        draw.heading(main, title, rows, ("n", "d_over_n", "gamma"), axes=POOLABLE), fontsize=9
    )
    return draw.save(fig, path)


# ----------------------------------------------------------------------------- theory plots


def error_vs_dn(rows, path, title: str | None = None, floor: float | None = None) -> str:
    """Mean test error (over seeds and n) against d/n on a log axis, with the fitted
    exp(-C d/n) of Cor. 3.2.1 / Thm 3.3 (metrics.fit_exponential_rate).

    Zero means cannot sit on a log axis: they are drawn at `floor` (default: a third of the
    smallest positive mean, or 1e-4) with their own marker and left out of the fit.
    """
    agg = stats.aggregate(rows, by="d_over_n", value="test_error")
    x = np.array(list(agg), float)
    m = np.array([s.mean for s in agg.values()])
    e = np.nan_to_num(np.array([s.sem for s in agg.values()]))
    pos = np.isfinite(m) & (m > 0)
    zero = m == 0
    if floor is None:
        floor = m[pos].min() / 3 if pos.any() else 1e-4
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_yscale("log")
    shown = np.concatenate([m[pos], [floor] if zero.any() else []])
    if shown.size:  # fixed limits: autoscaling a lone value gives a singular log axis
        ax.set_ylim(shown.min() / 3, shown.max() * 3)
        ax.set_autoscaley_on(False)
    if pos.any():
        ax.errorbar(
            x[pos],
            m[pos],
            yerr=e[pos],
            marker="o",
            ls="none",
            capsize=3,
            label="mean test error (± s.e.)",
        )
    if zero.any():
        ax.plot(
            x[zero],
            np.full(zero.sum(), floor),
            marker="v",
            ls="none",
            color="tab:red",
            label=f"mean error exactly 0: drawn at {floor:.2g}, excluded from the fit",
        )
    from jaxbof.experiments.classification.metrics import fit_exponential_rate  # JAX: lazily

    C, A, k = fit_exponential_rate(x, m)
    if math.isfinite(C):
        xs = np.linspace(x.min(), x.max(), 200)
        ax.plot(
            xs,
            A * np.exp(-C * xs),
            color="black",
            lw=1,
            label=f"fit $A e^{{-C d/n}}$: C = {C:.3g}, A = {A:.3g} ({k} nonzero points)",
        )
    else:
        ax.plot([], [], ls="none", label="no fit: needs 2 nonzero means at distinct d/n")
    ax.set_xlabel("d / n")
    ax.set_ylabel("test error (log scale)")
    ax.legend(fontsize=8)
    draw.footnote(
        fig,
        [
            "Theory (Cor. 3.2.1, Thm 3.3): error ~ exp(-C d/n) with unspecified "
            "constants; C is fitted, not predicted.",
            draw.flag_note(rows),
        ],
    )
    main = "Test error vs d/n (mean over trials and n)"
    ax.set_title(
        draw.heading(main, title, rows, ("d_over_n",), ignore=("n",), axes=POOLABLE), fontsize=9
    )
    return draw.save(fig, path)


def snr_vs_error(rows, path, title: str | None = None) -> str:
    """Scatter of the network SNR A_min / ||Z||_F (Lemma D.2) against the test error, one point
    per run, coloured by d/n; flagged runs as red crosses. Log x axis when every SNR is > 0,
    else linear."""
    snr = np.array([r["snr"] for r in rows], float)
    err = np.array([r["test_error"] for r in rows], float)
    dn = np.array([r["d_over_n"] for r in rows], float)
    bad = np.array([stats.is_flagged(r) for r in rows])
    ok = np.isfinite(snr) & np.isfinite(err)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    good = ok & ~bad
    if len(set(dn[good])) > 1:
        sc = ax.scatter(snr[good], err[good], c=dn[good], cmap=draw.CMAP, s=12)
        fig.colorbar(sc, ax=ax, label="d / n")
    else:
        ax.scatter(snr[good], err[good], s=12, label="runs")
    if (ok & bad).any():
        ax.scatter(
            snr[ok & bad],
            err[ok & bad],
            marker="x",
            color="tab:red",
            s=20,
            label="not converged / diverged",
        )
    if ok.any() and np.all(snr[ok] > 0):  # A_min < 0 (harmful regime) forces a linear axis
        ax.set_xscale("log")
    ax.set_xlabel(r"network SNR $A_{\min} / \|Z\|_F$")
    ax.set_ylabel("test error")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    dropped = int((~ok).sum())
    draw.footnote(
        fig, [f"{dropped} runs with non-finite SNR or error not shown" if dropped else None]
    )
    main = "Network SNR (Lemma D.2) vs test error, one point per run"
    ax.set_title(main + (f"\n{title}" if title else ""), fontsize=9)
    return draw.save(fig, path)


# ----------------------------------------------------------------------------- a results dir


def figures(directory, config, out) -> list[str]:
    """The pictures a classification results directory supports: heatmap: >= 2 values of n
    and of d/n; gamma_curve: some n with >= 2 gamma values (gamma = 5/n varies across n alone
    in Figure 1, which is no gamma curve); error_vs_dn and snr_vs_error always."""
    rows = draw.results(directory)
    extra = draw.describe(config.get("experiment"), Path(directory).name)
    out = Path(out)
    paths = []
    if len({r["n"] for r in rows}) >= 2 and len({r["d_over_n"] for r in rows}) >= 2:
        paths.append(heatmap(rows, out / "heatmap.png", title=extra))
    gammas: dict = {}
    for r in rows:
        gammas.setdefault(r["n"], set()).add(r["gamma"])
    if any(len(g) >= 2 for g in gammas.values()):
        paths.append(gamma_curve(rows, out / "gamma_curve.png", title=extra))
    paths.append(error_vs_dn(rows, out / "error_vs_dn.png", title=extra))
    paths.append(snr_vs_error(rows, out / "snr_vs_error.png", title=extra))
    return paths
