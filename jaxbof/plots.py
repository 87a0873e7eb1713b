"""Figures from stored results (matplotlib only; reads rows, never trains).

Each public function writes one PNG and returns its path. Figures are drawn with the
object-oriented API on an Agg canvas, not pyplot: no global backend switch, so importing this
module in a notebook leaves the notebook's backend alone, and figures are never left open.
`heatmap_table` and `heatmap_figure` expose what the heatmap draws, for tests and notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from jaxbof import store
from jaxbof.metrics import fit_exponential_rate

ZERO_COLOUR = "white"  # outside the colour map, so an exact 0 is never read as "small"
MISSING_COLOUR = "0.6"
CMAP = "viridis"
POOLABLE = ("n", "d_over_n", "gamma", "alpha", "noise_rate", "width")


def _save(fig: Figure, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return str(path)


def _pooled(rows, by: Sequence[str], ignore: Sequence[str] = ()) -> list[str]:
    """Grid axes (not in `by`) that take more than one value within some group of `by`."""
    out = []
    for axis in POOLABLE:
        if axis in by or axis in ignore:
            continue
        seen: dict = {}
        for r in rows:
            seen.setdefault(tuple(r[c] for c in by), set()).add(r[axis])
        if any(len(v) > 1 for v in seen.values()):
            out.append(axis)
    return out


def _subtitle(extra: str | None, rows, by: Sequence[str], ignore: Sequence[str] = ()) -> str:
    """Title lines under the main one: pooled grid axes (honesty about what a mean mixes),
    then the caller's text."""
    pooled = _pooled(rows, by, ignore)
    lines = ["averaged over differing " + ", ".join(pooled) if pooled else None, extra]
    return "\n".join(filter(None, lines))


def _title(main: str, extra: str | None, rows, by: Sequence[str], ignore: Sequence[str] = ()):
    sub = _subtitle(extra, rows, by, ignore)
    return main + (f"\n{sub}" if sub else "")


def _footnote(fig: Figure, lines) -> None:
    """Text under the axes that constrained layout makes room for (a legend of bare labels)."""
    lines = [t for t in lines if t]
    if lines:
        handles = [Patch(visible=False, label=t) for t in lines]
        fig.legend(handles=handles, loc="outside lower left", fontsize=7, frameon=False,
                   handlelength=0, handletextpad=0, borderaxespad=0.2)


def _n_flagged(rows) -> int:
    return sum(store.is_flagged(r) for r in rows)


def _flag_note(rows) -> str | None:
    k = _n_flagged(rows)
    if not k:
        return None
    return f"{k} of {len(rows)} runs not converged within max_steps or diverged: excluded"


# ----------------------------------------------------------------------------- Figure 1


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
    """Mean of `value` per (n, d/n) cell over valid runs (store.aggregate), with annotations."""
    agg = store.aggregate(rows, by=("n", "d_over_n"), value=value)
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


def heatmap_figure(table: HeatmapTable, *, value: str = "test_error",
                   title: str | None = None) -> Figure:
    """Figure 1: n across, d/n up, mean per cell on a log colour scale.

    Exact zeros (a log scale has no place for them) are drawn in ZERO_COLOUR with the label
    "0"; cells without a valid run in MISSING_COLOUR ("n/a"); '*' marks flagged runs.
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
        mesh = ax.pcolormesh(xe, ye, np.ma.masked_where(~positive, mean), cmap=CMAP, norm=norm,
                             **edge)
        mesh.set_gid("positive_cells")
        fig.colorbar(mesh, ax=ax, label=f"mean {value} (log scale; white = exactly 0)")
    for gid, mask, colour in (("zero_cells", table.zero_yx, ZERO_COLOUR),
                              ("missing_cells", missing, MISSING_COLOUR)):
        if mask.any():
            layer = ax.pcolormesh(xe, ye, np.ma.masked_where(~mask, np.ones_like(mean)),
                                  cmap=ListedColormap([colour]), **edge)
            layer.set_gid(gid)
    lut = colormaps[CMAP]
    for i in range(ny):
        for j in range(nx):
            colour = "black"
            if positive[i, j]:
                rgb = lut(norm(mean[i, j]))[:3]
                luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
                colour = "black" if luma > 0.5 else "white"
            ax.text(j + 0.5, i + 0.5, table.labels_yx[i][j], ha="center", va="center",
                    fontsize=7, color=colour)
    ax.set_xticks(np.arange(nx) + 0.5, [f"{n:g}" for n in table.n_x])
    ax.set_yticks(np.arange(ny) + 0.5, [f"{r:g}" for r in table.dn_y])
    ax.set_xlabel("n (training samples)")
    ax.set_ylabel("d / n")
    ax.set_xlim(0, nx)
    ax.set_ylim(0, ny)
    handles = [Patch(facecolor=ZERO_COLOUR, edgecolor="0.4", label="0: no test error in any trial")]
    if missing.any():
        handles.append(Patch(facecolor=MISSING_COLOUR, label="n/a: no converged run"))
    k = int(table.flagged_yx.sum())
    if k:
        handles.append(Line2D([], [], ls="none", marker="$*$", color="black",
                              label=f"*: cell has runs not converged/diverged ({k} in all), "
                                    "excluded from its mean"))
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False)
    trials = set((table.count_yx + table.flagged_yx).ravel().tolist())
    per_cell = f"{trials.pop()} trials per cell" if len(trials) == 1 else "trials per cell vary"
    main = f"Mean {value} ({per_cell}; labels: 3 significant digits)"
    ax.set_title(main + (f"\n{title}" if title else ""), fontsize=9)
    return fig


def heatmap(rows, path, value: str = "test_error", title: str | None = None) -> str:
    """Figure 1 of the paper as a PNG at `path`; `title` adds a line (e.g. the MC precision)."""
    sub = _subtitle(title, rows, ("n", "d_over_n"))
    return _save(heatmap_figure(heatmap_table(rows, value), value=value, title=sub or None), path)


# ----------------------------------------------------------------------------- Figure 2


def gamma_curve(rows, path, title: str | None = None) -> str:
    """Figure 2: mean test error against gamma, one line per n (per (n, d/n) if d/n varies),
    error bars = standard error over trials (the published figure has none)."""
    by_dn = len({r["d_over_n"] for r in rows}) > 1
    agg = store.aggregate(rows, by=("n", "d_over_n", "gamma"))
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
    _footnote(fig, [_flag_note(rows)])
    main = "Test error vs signal strength; error bars: standard error over trials"
    ax.set_title(_title(main, title, rows, ("n", "d_over_n", "gamma")), fontsize=9)
    return _save(fig, path)


# ----------------------------------------------------------------------------- theory plots


def error_vs_dn(rows, path, title: str | None = None, floor: float | None = None) -> str:
    """Mean test error (over seeds and n) against d/n on a log axis, with the fitted
    exp(-C d/n) of Cor. 3.2.1 / Thm 3.3 (metrics.fit_exponential_rate).

    Zero means cannot sit on a log axis: they are drawn at `floor` (default: a third of the
    smallest positive mean, or 1e-4) with their own marker and left out of the fit.
    """
    agg = store.aggregate(rows, by="d_over_n")
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
        ax.errorbar(x[pos], m[pos], yerr=e[pos], marker="o", ls="none", capsize=3,
                    label="mean test error (± s.e.)")
    if zero.any():
        ax.plot(x[zero], np.full(zero.sum(), floor), marker="v", ls="none", color="tab:red",
                label=f"mean error exactly 0: drawn at {floor:.2g}, excluded from the fit")
    C, A, k = fit_exponential_rate(x, m)
    if math.isfinite(C):
        xs = np.linspace(x.min(), x.max(), 200)
        ax.plot(xs, A * np.exp(-C * xs), color="black", lw=1,
                label=f"fit $A e^{{-C d/n}}$: C = {C:.3g}, A = {A:.3g} ({k} nonzero points)")
    else:
        ax.plot([], [], ls="none", label="no fit: needs 2 nonzero means at distinct d/n")
    ax.set_xlabel("d / n")
    ax.set_ylabel("test error (log scale)")
    ax.legend(fontsize=8)
    _footnote(fig, ["Theory (Cor. 3.2.1, Thm 3.3): error ~ exp(-C d/n) with unspecified "
                    "constants; C is fitted, not predicted.", _flag_note(rows)])
    main = "Test error vs d/n (mean over trials and n)"
    ax.set_title(_title(main, title, rows, ("d_over_n",), ignore=("n",)), fontsize=9)
    return _save(fig, path)


def snr_vs_error(rows, path, title: str | None = None) -> str:
    """Scatter of the network SNR A_min / ||Z||_F (Lemma D.2) against the test error, one point
    per run, coloured by d/n; flagged runs as red crosses. Log x axis when every SNR is > 0,
    else linear."""
    snr = np.array([r["snr"] for r in rows], float)
    err = np.array([r["test_error"] for r in rows], float)
    dn = np.array([r["d_over_n"] for r in rows], float)
    bad = np.array([store.is_flagged(r) for r in rows])
    ok = np.isfinite(snr) & np.isfinite(err)
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    good = ok & ~bad
    if len(set(dn[good])) > 1:
        sc = ax.scatter(snr[good], err[good], c=dn[good], cmap=CMAP, s=12)
        fig.colorbar(sc, ax=ax, label="d / n")
    else:
        ax.scatter(snr[good], err[good], s=12, label="runs")
    if (ok & bad).any():
        ax.scatter(snr[ok & bad], err[ok & bad], marker="x", color="tab:red", s=20,
                   label="not converged / diverged")
    if ok.any() and np.all(snr[ok] > 0):  # A_min < 0 (harmful regime) forces a linear axis
        ax.set_xscale("log")
    ax.set_xlabel(r"network SNR $A_{\min} / \|Z\|_F$")
    ax.set_ylabel("test error")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    dropped = int((~ok).sum())
    _footnote(fig, [f"{dropped} runs with non-finite SNR or error not shown" if dropped else None])
    main = "Network SNR (Lemma D.2) vs test error, one point per run"
    ax.set_title(main + (f"\n{title}" if title else ""), fontsize=9)
    return _save(fig, path)


# ----------------------------------------------------------------------------- a results dir


def _find(obj, key: str):
    """First value stored under `key` anywhere in a nested dict/list (None if absent)."""
    if isinstance(obj, Mapping):
        if key in obj:
            return obj[key]
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


def describe(experiment: Mapping | None, default_name: str) -> str:
    """One title line: the experiment's name and the Monte Carlo precision of a test error."""
    experiment = experiment or {}
    name = experiment.get("name") or default_name
    n_test = _find(experiment, "n_test")
    precision = experiment.get("precision")
    name = f"{name} ({precision})" if precision else str(name)
    if n_test:
        return f"{name}: {n_test} clean test points per trial (resolution {1 / n_test:.2g})"
    return name


def plot_dir(directory, out=None) -> list[str]:
    """Write the plots DIR/results.csv supports into `out` (default DIR); returns their paths.

    NTK concentration results: concentration.png. Classification: heatmap: >= 2 values of n
    and of d/n; gamma_curve: some n with >= 2 gamma values (gamma =
    5/n varies across n alone in Figure 1, which is no gamma curve); error_vs_dn and
    snr_vs_error always.
    """
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    rows = store.load_results(directory)
    if not rows:
        raise ValueError(f"no results in {directory / store.RESULTS}")
    config = store.load_config(directory) or {}
    extra = describe(config.get("experiment"), directory.name)
    if "rel_op_error" in rows[0]:  # an NTK concentration study (jaxbof.concentration)
        from jaxbof.concentration import fit_slopes  # imports JAX, which plots otherwise need not
        return [concentration(rows, fit_slopes(rows), out / "concentration.png", title=extra)]
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


# ----------------------------------------------------------------------------- sphere spectra


def spectrum(k, multiplicity, eigenvalue, path, empirical=None, title: str | None = None,
             max_index: int | None = None) -> str:
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
        ax.hlines(mu[i], start + 1, min(stop, limit or stop) + 0.999, colors="C0", lw=2,
                  label="analytic mu_k, repeated N(d, k) times" if j == 0 else None)
        if j < 8:
            ax.annotate(f"k={int(k[i])}", (start + 1, mu[i]), fontsize=7,
                        xytext=(2, 3), textcoords="offset points")
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
    return _save(fig, path)


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
            ax.plot(widths, fit.prefactor * widths ** fit.slope, ":", color=f"C{i}", lw=1)
    if rows:
        m = np.unique([float(r["width"]) for r in rows])
        y0 = np.median([float(r["rel_op_error"]) for r in rows if float(r["width"]) == m[0]])
        ax.plot(m, y0 * (m / m[0]) ** -0.5, "k--", lw=1, label="M^(-1/2) reference")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width M")
    ax.set_ylabel("||H_M - H_inf||_op / ||H_inf||_op")
    ax.legend(fontsize=8)
    ax.set_title("NTK concentration at initialization" + (f"\n{title}" if title else ""),
                 fontsize=9)
    return _save(fig, path)
