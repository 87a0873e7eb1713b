"""Figures from stored results (matplotlib only; reads rows, never trains).

Each public function writes one PNG and returns its path. Figures are drawn with the
object-oriented API on an Agg canvas, not pyplot: no global backend switch, so importing this
module in a notebook leaves the notebook's backend alone, and figures are never left open.
`heatmap_table` and `heatmap_figure` expose what the heatmap draws, for tests and notebooks.
`plot_dir` draws what a results directory supports, by the experiment kind in its config.json:
classification (Karhadkar et al.), regression (Park et al.: REGRESSION_FIGURES, built on
`mean_curves`, which averages over seeds and leaves diverged runs out) or ntk-concentration.
NumPy and matplotlib only at import time: the few helpers that live in JAX modules are
imported where they are used.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
    from jaxbof.experiments.classification.metrics import fit_exponential_rate  # metrics imports JAX; plots must not

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


KINDS = ("classification", "regression", "ntk-concentration", "optimizers")


def experiment_kind(config: Mapping | None, directory="results") -> str:
    """The kind stored at config["experiment"]["kind"]; a config without one (written before
    kinds were stored) is a classification study. No config at all: ValueError."""
    if config is None:
        raise ValueError(f"no {store.CONFIG} in {directory}: cannot tell which experiment "
                         "its results hold")
    experiment = config.get("experiment")
    kind = experiment.get("kind") if isinstance(experiment, Mapping) else None
    kind = kind or "classification"
    if kind not in KINDS:
        raise ValueError(f"{directory}: unknown experiment kind {kind!r}; "
                         f"known: {', '.join(KINDS)}")
    return kind


def plot_dir(directory, out=None) -> list[str]:
    """Write the plots DIR/results.csv supports into `out` (default DIR); returns their paths.

    Dispatches on config["experiment"]["kind"] (`experiment_kind`), never on column names.
    ntk-concentration: concentration.png. optimizers (a study's root): optimizers.png
    (`optimizer_study`). regression: each entry of REGRESSION_FIGURES whose
    test the rows pass. classification: heatmap: >= 2 values of n and of d/n; gamma_curve:
    some n with >= 2 gamma values (gamma = 5/n varies across n alone in Figure 1, which is no
    gamma curve); error_vs_dn and snr_vs_error always.
    """
    directory = Path(directory)
    out = Path(out) if out is not None else directory
    config = store.load_config(directory)
    if config is not None and experiment_kind(config, directory) == "optimizers":
        return [optimizer_study(directory, out / "optimizers.png")]
    rows = store.load_results(directory)
    if not rows:
        raise ValueError(f"no results in {directory / store.RESULTS}")
    kind = experiment_kind(config, directory)
    extra = describe(config.get("experiment"), directory.name)
    if kind == "ntk-concentration":
        from jaxbof.concentration import fit_slopes  # imports JAX, which plots otherwise need not
        return [concentration(rows, fit_slopes(rows), out / "concentration.png", title=extra)]
    if kind == "regression":
        return [fn(rows, out / name, title=extra)
                for name, fn, supported in REGRESSION_FIGURES if supported(rows)]
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


# ----------------------------------------------------------------------------- regression
# Park et al. 2024 (spec/regression_ntk.md, "What to measure"): rows are one per (cell,
# recorded time). A run is one cell (the coordinates below); a run that diverged anywhere is
# left out of every mean, all its rows, and counted in the figure's footnote.

REG_COORDS = ("n", "d", "width", "seed", "target", "noise", "noise_kind", "init", "bias",
              "train_outer")
# The main study, column by column: the preferred value where present, else the most common.
MAIN_STUDY = (("init", "antisymmetric"), ("bias", False), ("train_outer", False),
              ("target", None), ("d", None), ("noise", None), ("noise_kind", None))
BAND_NOTE = "lines: mean over seeds; shaded: ± 1 s.e.m. (where >= 2 seeds)"


class Curve(NamedTuple):
    """One column averaged over runs (seeds) at each x; diverged runs are never in it."""

    x: np.ndarray
    mean: np.ndarray
    sem: np.ndarray  # std(ddof=1) / sqrt(count); nan where count < 2
    count: np.ndarray  # runs averaged at each x


class LogSlope(NamedTuple):
    slope: float  # least squares of log y on log x; nan with < 2 usable points
    prefactor: float  # y ~ prefactor * x ** slope
    points: int  # points used (finite, > 0)


def run_key(row: Mapping) -> tuple:
    """The run (cell) a row belongs to: its coordinates."""
    return tuple(row.get(c) for c in REG_COORDS)


def diverged_runs(rows) -> set:
    return {run_key(r) for r in rows if r.get("diverged")}


def mean_curves(rows, value: str, by: Sequence[str] = (), x: str = "t",
                positive_x: bool = False) -> dict:
    """{key: Curve} of `value` against `x`, one Curve per value of the columns `by` (key: the
    tuple of their values), averaged over the runs at each x.

    Every row of a run that diverged is left out (its finite early rows too); nan values
    (ntk_drift outside its records) are skipped; positive_x drops x <= 0 (log axes).
    """
    bad = diverged_runs(rows)
    groups: dict = {}
    for r in rows:
        xv, v = float(r[x]), float(r[value])
        if run_key(r) in bad or not math.isfinite(v) or (positive_x and not xv > 0):
            continue
        xv = float(f"{xv:.12g}")  # the same recorded time in every seed, up to rounding
        groups.setdefault(tuple(r[c] for c in by), {}).setdefault(xv, []).append(v)
    out = {}
    for key in sorted(groups):
        pts = sorted(groups[key].items())
        vals = [np.asarray(v, np.float64) for _, v in pts]
        out[key] = Curve(
            np.array([p[0] for p in pts]),
            np.array([v.mean() for v in vals]),
            np.array([v.std(ddof=1) / math.sqrt(len(v)) if len(v) >= 2 else math.nan
                      for v in vals]),
            np.array([len(v) for v in vals]))
    return out


def fit_loglog_slope(x, y) -> LogSlope:
    """Least-squares line through (log x, log y) over finite positive points."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[keep])) < 2:
        return LogSlope(math.nan, math.nan, int(keep.sum()))
    slope, icpt = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return LogSlope(float(slope), float(math.exp(icpt)), int(keep.sum()))


def target_coefs(target: str) -> dict[int, float]:
    """{degree: c_k} of a target string "1:0.5,2:0.5,4:0.5" (unparsable parts skipped)."""
    out = {}
    for part in str(target).split(","):
        k, _, c = part.partition(":")
        try:
            out[int(k)] = float(c)
        except ValueError:
            continue
    return out


def _degrees(rows) -> list[int]:
    """Degrees K with a coef_K column whose pop_coef_K is measured somewhere in rows."""
    cols = rows[0] if rows else {}
    return sorted(int(c[5:]) for c in cols if c.startswith("coef_") and c[5:].isdigit()
                  and f"pop_{c}" in cols
                  and any(math.isfinite(float(r[f"pop_{c}"])) for r in rows))


def _where(rows, **values) -> list:
    return [r for r in rows if all(r[c] == v for c, v in values.items())]


def _n_runs(rows) -> int:
    return len({run_key(r) for r in rows})


def _prefer(rows, column: str, value=None) -> list:
    """Rows at `value` of `column` if any, else at its most common value (counted in runs)."""
    if not any(r[column] == value for r in rows):
        runs = Counter(k[REG_COORDS.index(column)] for k in {run_key(r) for r in rows})
        value = max(sorted(runs, key=str), key=runs.__getitem__)
    return _where(rows, **{column: value})


def main_study(rows, free: Sequence[str] = ()) -> list:
    """The rows of the main study (MAIN_STUDY), leaving the columns in `free` unfiltered."""
    for column, value in MAIN_STUDY:
        if rows and column not in free:
            rows = _prefer(rows, column, value)
    return rows


def _largest(rows, column: str) -> list:
    return _where(rows, **{column: max(r[column] for r in rows)}) if rows else []


def _widest_common(rows) -> list:
    """Rows at the largest width among those at which the most values of n were run."""
    ns: dict = {}
    for r in rows:
        ns.setdefault(r["width"], set()).add(r["n"])
    return _where(rows, width=max(ns, key=lambda m: (len(ns[m]), m))) if rows else []


def _biggest(rows) -> list:
    """Rows at the largest n, and at the largest width run with it."""
    return _largest(_largest(rows, "n"), "width")


def _final(rows) -> list:
    """Each run's last row, with ntk_drift replaced by the run's last finite one and diverged
    set if the run diverged anywhere."""
    drift: dict = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        if math.isfinite(float(r.get("ntk_drift", math.nan))):
            drift[run_key(r)] = r["ntk_drift"]
    bad = diverged_runs(rows)
    return [{**r, "ntk_drift": drift.get(run_key(r), math.nan), "diverged": run_key(r) in bad}
            for r in rows if r["final"]]


def _kernel(bias: bool, train_outer: bool) -> str:
    return ("both layers" if train_outer else "first layer") + (" + bias" if bias else "")


def _values(rows, column: str) -> list:
    return sorted({r[column] for r in rows})


_SUBSET = (("target", "f* = {}", "f* in {{{}}}"), ("init", "{} init", "init in {{{}}}"),
           ("bias", None, "with and without bias"), ("train_outer", None, "kernels differ"),
           ("d", "d = {}", "d in {{{}}}"), ("n", "n = {}", "n in {{{}}}"),
           ("width", "M = {}", "M in {{{}}}"), ("noise_kind", None, None),
           ("noise", "noise level {}", "noise levels {{{}}}"))


def _subset_label(rows) -> str:
    """What a figure shows: each coordinate's value (or values) over `rows`, and the seeds."""
    parts = []
    for column, one, many in _SUBSET:
        vals = _values(rows, column)
        if len(vals) > 1:
            parts.append(many.format(", ".join(map(str, vals))) if many else None)
        elif column == "bias":
            parts.append("bias" if vals[0] else "no bias")
        elif column == "train_outer":
            parts.append("both layers trained" if vals[0] else "first layer trained")
        elif one:
            parts.append(one.format(vals[0]))
        elif column == "noise_kind":
            parts.append(f"{vals[0]} noise")
    seeds = _values(rows, "seed")
    parts.append(f"seed{'s' * (len(seeds) != 1)} " + ", ".join(map(str, seeds)) if len(seeds) <= 6
                 else f"{len(seeds)} seeds")
    return "\n".join(textwrap.wrap("; ".join(filter(None, parts)), 110))


def _diverged_note(rows) -> str | None:
    bad = sorted(diverged_runs(rows), key=str)
    if not bad:
        return None
    col = {c: REG_COORDS.index(c) for c in ("n", "width", "seed", "init", "bias")}
    where = ", ".join(f"(n={k[col['n']]}, M={k[col['width']]}, seed={k[col['seed']]})"
                      for k in bad[:6]) + (", ..." if len(bad) > 6 else "")
    return f"{len(bad)} of {_n_runs(rows)} runs diverged, left out of every mean: {where}"


def _draw(ax, curve: Curve, label: str | None, color, ls: str = "-", logy: bool = True,
          bars: bool = False, marker: str | None = None):
    """A mean curve with its s.e.m. as a band (bars=False) or error bars; on a log y axis
    means <= 0 are not drawn. Returns whether anything was."""
    ok = np.isfinite(curve.mean) & ((curve.mean > 0) if logy else True)
    if not ok.any():
        return False
    x, m, e = curve.x[ok], curve.mean[ok], curve.sem[ok]
    if bars:
        ax.errorbar(x, m, yerr=np.nan_to_num(e), color=color, ls=ls, marker=marker or "o",
                    ms=4, capsize=3, label=label)
    else:
        ax.plot(x, m, color=color, ls=ls, marker=marker, ms=3, label=label)
        band = np.isfinite(e) & ((m - e > 0) if logy else True)
        if band.any():
            ax.fill_between(x, m - e, m + e, where=band, color=color, alpha=0.2, lw=0)
    return True


def _seeds(curve: Curve) -> str:
    k = int(curve.count.max())
    return f"{k} seed{'s' * (k != 1)}"


def _curves_on(ax, rows, value: str, by: Sequence[str], label: Callable, *, x: str = "t",
               ls: str = "-", logy: bool = True, bars: bool = False, colors=None,
               seeds: bool = True) -> dict:
    """Draw mean_curves(rows, value, by, x) on ax, one colour per key (colors: {key: colour},
    default C0, C1, ... in key order); label(key) names a curve, with its seed count unless
    seeds=False. Log x for t; returns the curves drawn."""
    curves = mean_curves(rows, value, by, x=x, positive_x=(x == "t"))
    for i, (key, c) in enumerate(curves.items()):
        name = label(*key) if label else None
        if name and seeds:
            name += f" ({_seeds(c)})"
        _draw(ax, c, name, (colors or {}).get(key, f"C{i}"), ls=ls, logy=logy, bars=bars)
    if x == "t":
        ax.set_xscale("log")
        ax.set_xlabel(r"time $t = \eta \cdot$ step (log scale)")
    if logy and curves:
        ax.set_yscale("log")
    return curves


def _panels(k: int = 1, width: float = 6.4):
    fig = Figure(figsize=(width if k == 1 else 5.2 * k, 4.9), layout="constrained")
    return fig, list(fig.subplots(1, k, squeeze=False)[0])


def _finish(fig: Figure, axes, main: str, title: str | None, rows, path, notes=()) -> str:
    """Legends, the title (what is shown, the subset, the caller's line), the footnote (the
    caller's notes and the diverged runs) and the PNG."""
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    head = "\n".join(filter(None, [textwrap.fill(main, 100), _subset_label(rows), title]))
    if len(axes) == 1:
        axes[0].set_title(head, fontsize=8)
    else:
        fig.suptitle(head, fontsize=8)
    _footnote(fig, [*notes, _diverged_note(rows)])
    return _save(fig, path)


def approx_error(rows, path, title: str | None = None) -> str:
    """The exact approximation error sum_k exp(-2 t mu_k) c_k^2 against t, one curve per
    (d, target, kernel), beside (dashed) the measured excess risk at its largest n and M (main
    study's init): they meet where the estimation error is small."""
    fig, (ax,) = _panels()
    shown = []
    kernels = sorted({(r["d"], r["target"], r["bias"], r["train_outer"]) for r in rows}, key=str)
    for i, (d, target, bias, outer) in enumerate(kernels):
        grp = _where(rows, d=d, target=target, bias=bias, train_outer=outer)
        name = f"f* = {target}, d = {d}, {_kernel(bias, outer)}"
        _curves_on(ax, grp, "approx_error", (), lambda: f"exact approx. error: {name}",
                   colors={(): f"C{i}"}, seeds=False)
        big = _biggest(main_study(grp))
        _curves_on(ax, big, "excess_risk", ("n", "width"),
                   lambda n, m: f"measured excess risk, n = {n}, M = {m}", ls="--",
                   colors={(big[0]["n"], big[0]["width"]): f"C{i}"})
        shown += grp
    ax.set_ylabel("squared L2 error on the sphere (log scale)")
    return _finish(fig, [ax], "Approximation error of the population flow (exact) vs the "
                   "trained net's excess risk", title, shown, path,
                   ["exact: sum_k exp(-2 t mu_k) c_k^2; measured (dashed): Monte Carlo on "
                    "fresh test points", BAND_NOTE])


def estimation_error(rows, path, title: str | None = None) -> str:
    """Estimation error ||f_t - f_t^pop||^2 against t: one curve per n at the main study's
    largest common width; beside it (when >= 2 widths) one curve per width at the largest n."""
    main = main_study(rows)
    at_m = _widest_common(main)
    at_n = _largest(main, "n")
    two = len(_values(at_n, "width")) > 1
    fig, axes = _panels(2 if two else 1)
    _curves_on(axes[0], at_m, "estimation_error", ("n",), "n = {}".format)
    axes[0].set_title(f"per n at M = {at_m[0]['width']}", fontsize=8)
    if two:
        _curves_on(axes[1], at_n, "estimation_error", ("width",), "M = {}".format,
                   colors={(m,): f"C{j}" for j, m in enumerate(_values(main, "width"), 3)})
        axes[1].set_title(f"per M at n = {at_n[0]['n']}", fontsize=8)
    axes[0].set_ylabel(r"estimation error $\|f_t - f_t^{pop}\|^2$ (log scale)")
    return _finish(fig, axes, "Estimation error: should shrink as n grows (large M) and grow "
                   "as M shrinks", title, at_m + at_n if two else at_m, path, [BAND_NOTE])


def risks(rows, path, title: str | None = None) -> str:
    """Training risk (noisy labels, dashed) and excess risk (solid) against t, one colour per
    n, at the main study's largest common width, with the noise variance: training risk well
    below it while the excess risk stays small is benign overfitting."""
    sub = _widest_common(main_study(rows))
    fig, (ax,) = _panels()
    _curves_on(ax, sub, "excess_risk", ("n",), "excess risk, n = {}".format)
    _curves_on(ax, sub, "train_risk", ("n",), "training risk, n = {}".format, ls="--",
               seeds=False)
    for v in _values(sub, "noise_var"):
        ax.axhline(v, color="black", lw=0.8, ls=":", label=f"noise variance {v:.3g}")
    ax.set_ylabel("risk (log scale)")
    return _finish(fig, [ax], "Benign overfitting: training risk (dashed) vs excess risk "
                   "(solid)", title, sub, path,
                   ["training risk below the noise variance = the noise is being fitted; "
                    "excess risk on fresh noise-free points", BAND_NOTE])


def _rate(rows, K: int, c: float) -> float:
    """mu_K recovered from pop_coef_K = (1 - exp(-t mu_K)) c_K (median over recorded times)."""
    mus = []
    for r in rows:
        q, t = float(r[f"pop_coef_{K}"]) / c, float(r["t"])
        if t > 0 and 1e-9 < q < 1 - 1e-9:
            mus.append(-math.log1p(-q) / t)
    return float(np.median(mus)) if mus else math.nan


def staircase(rows, path, title: str | None = None) -> str:
    """Learned coefficient coef_K = <f_t, Y_K> against t for each degree K (solid) beside the
    population flow's pop_coef_K (dashed), main study at its largest n and M; dotted
    verticals at t = 1/mu_K (mu_K read off pop_coef_K), dotted horizontals at c_K."""
    sub = _biggest(main_study(rows))
    coefs = target_coefs(sub[0]["target"])
    fig, (ax,) = _panels()
    for i, K in enumerate(_degrees(sub)):
        col = {(): f"C{i}"}
        _curves_on(ax, sub, f"coef_{K}", (), lambda: f"coef_{K} (network)", logy=False,
                   colors=col)
        _curves_on(ax, sub, f"pop_coef_{K}", (), lambda: f"pop_coef_{K} (population flow)",
                   ls="--", logy=False, colors=col, seeds=False)
        c = coefs.get(K, math.nan)
        if math.isfinite(c) and c:
            ax.axhline(c, color=f"C{i}", lw=0.6, ls=":")
            mu = _rate(sub, K, c)
            if math.isfinite(mu) and mu > 0:
                ax.axvline(1 / mu, color=f"C{i}", lw=0.8, ls=":",
                           label=f"t = 1/mu_{K} = {1 / mu:.3g}")
    ax.set_ylabel(r"coefficient on $Y_K(\cdot\,; \xi_K)$")
    return _finish(fig, [ax], "Spectral bias: degree K is learned at t ~ 1/mu_K", title, sub,
                   path, ["dotted horizontals: target coefficients c_K", BAND_NOTE])


def final_excess(rows, path, title: str | None = None) -> str:
    """Final excess risk (each run's last row) against n, a line per width M (log-log, error
    bars over seeds), with the approximation error at the final time (the excess risk a
    vanishing estimation error would leave): far above it, M is too small for n."""
    sub = _final(main_study(rows))
    fig, (ax,) = _panels()
    excess = _curves_on(ax, sub, "excess_risk", ("width",), "M = {}".format, x="n", bars=True)
    floor = _curves_on(ax, sub, "approx_error", (), lambda: "approx. error at the final t",
                       x="n", ls=":", colors={(): "black"}, seeds=False)
    notes = ["error bars: ± 1 s.e.m. over seeds (where >= 2)"]
    low = min((c.mean[c.mean > 0].min() for c in excess.values() if (c.mean > 0).any()),
              default=math.nan)
    approx = [v for c in floor.values() for v in c.mean if v > 0]
    if approx and min(approx) < low / 100:  # would squash the excess risks into a line
        ax.set_ylim(bottom=low / 30)
        span = " to ".join(dict.fromkeys(f"{v:.2g}" for v in (min(approx), max(approx))))
        notes.append(f"approximation error at the final t: {span} (below the axis where not "
                     "drawn)")
    ax.set_xscale("log")
    ax.set_xlabel("n (training samples, log scale)")
    ax.set_ylabel("final excess risk (log scale)")
    return _finish(fig, [ax], "Final excess risk over (n, M): near the approximation error "
                   "where the mechanism holds, far above it where M is too small", title, sub,
                   path, notes)


def ntk_regime(rows, path, title: str | None = None) -> str:
    """Final weight movement max_j ||w_j(t) - w_j(0)|| and last recorded NTK drift
    ||H_t - H_0|| / ||H_0|| against width M (log-log), a line per n with its fitted slope,
    main study; the NTK regime predicts slope -1/2."""
    sub = _final(main_study(rows))
    fig, axes = _panels(2)
    for ax, value, name in zip(axes, ("weight_move", "ntk_drift"),
                               (r"$\max_j \|w_j(t) - w_j(0)\|$", r"$\|H_t - H_0\| / \|H_0\|$")):
        curves = mean_curves(sub, value, ("n",), x="width")
        for i, ((n,), c) in enumerate(curves.items()):
            fit = fit_loglog_slope(c.x, c.mean)
            slope = f"slope {fit.slope:.3f}" if math.isfinite(fit.slope) else "no fit"
            _draw(ax, c, f"n = {n} ({_seeds(c)}): {slope}", f"C{i}", bars=True)
            if math.isfinite(fit.slope):
                ax.plot(c.x, fit.prefactor * c.x ** fit.slope, ":", color=f"C{i}", lw=1)
        if curves:
            m = np.unique(np.concatenate([c.x for c in curves.values()]))
            y0 = np.nanmedian([c.mean[0] for c in curves.values()])
            if y0 > 0:
                ax.plot(m, y0 * (m / m[0]) ** -0.5, "k--", lw=0.8, label="M^(-1/2) reference")
            ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, f"no {value} recorded", ha="center", transform=ax.transAxes)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width M")
        ax.set_ylabel(name + " (log scale)")
    axes[0].set_title("final weight movement", fontsize=8)
    axes[1].set_title("NTK drift at the last drift record", fontsize=8)
    return _finish(fig, axes, "NTK regime checks against width (least-squares slopes in the "
                   "legend; expect about -1/2)", title, sub, path,
                   ["error bars: ± 1 s.e.m. over seeds (where >= 2)"])


def _cubic_rows(rows) -> list:
    return [r for r in rows if 3 in target_coefs(r["target"]) and "coef_3" in r]


def cubic_bias(rows, path, title: str | None = None) -> str:
    """coef_3 against t with and without a bias (solid), beside pop_coef_3 (dashed), for a
    target with degree 3, at its largest n and M: without bias mu_3 = 0, so it is never
    learned."""
    cands = main_study(_cubic_rows(rows), free=("bias",))
    sub = [r for b in (False, True) for r in _biggest(_where(cands, bias=b))]
    fig, (ax,) = _panels()
    colors = {(False,): "C3", (True,): "C0"}
    name = {False: "no bias", True: "with bias"}.__getitem__
    _curves_on(ax, sub, "coef_3", ("bias",), lambda b: f"coef_3, {name(b)}", logy=False,
               colors=colors)
    _curves_on(ax, sub, "pop_coef_3", ("bias",), lambda b: f"pop_coef_3, {name(b)}", ls="--",
               logy=False, colors=colors, seeds=False)
    c3 = target_coefs(sub[0]["target"])[3]
    ax.axhline(c3, color="black", lw=0.6, ls=":", label=f"c_3 = {c3:g}")
    ax.set_ylabel(r"coefficient on $Y_3(\cdot\,; \xi_3)$")
    return _finish(fig, [ax], "Degree 3 with and without bias (no bias: mu_3 = 0, never "
                   "learned)", title, sub, path, [BAND_NOTE])


def _init_rows(rows) -> list:
    """Rows of the settings (all coordinates but init and seed) run with >= 2 inits."""
    other = [c for c in REG_COORDS if c not in ("init", "seed")]
    inits: dict = {}
    for r in rows:
        inits.setdefault(tuple(r[c] for c in other), set()).add(r["init"])
    return [r for r in rows if len(inits[tuple(r[c] for c in other)]) > 1]


def init_compare(rows, path, title: str | None = None) -> str:
    """Excess risk and kernel gap ||f_t - f_t^lin||^2 against t, antisymmetric against
    Gaussian init at the same (n, M) (the largest run with both)."""
    sub = _biggest(main_study(_init_rows(rows), free=("init",)))
    fig, axes = _panels(2)
    colors = {(v,): f"C{i}" for i, v in enumerate(("antisymmetric", "gaussian"))}
    for ax, value, name in zip(axes, ("excess_risk", "kernel_gap"),
                               ("excess risk", r"kernel gap $\|f_t - f_t^{lin}\|^2$")):
        _curves_on(ax, sub, value, ("init",), "{} init".format, colors=colors)
        ax.set_ylabel(name + " (log scale)")
    return _finish(fig, axes, "Initialization: antisymmetric (f_0 = 0) vs Gaussian", title,
                   sub, path, [BAND_NOTE])


def _positive_t(rows) -> bool:
    return any(float(r["t"]) > 0 for r in rows)


# (file name, function, does the rows' data support the picture)
REGRESSION_FIGURES = (
    ("approx_error.png", approx_error, _positive_t),
    ("estimation_error.png", estimation_error,
     lambda rows: len(_values(_widest_common(main_study(rows)), "n")) >= 2),
    ("risks.png", risks, lambda rows: _positive_t(main_study(rows))),
    ("staircase.png", staircase, lambda rows: bool(_degrees(_biggest(main_study(rows))))),
    ("final_excess.png", final_excess,
     lambda rows: len(_values(_final(main_study(rows)), "n")) >= 2),
    ("ntk_regime.png", ntk_regime,
     lambda rows: any(len(_values(_where(f, n=n), "width")) >= 2
                      for f in [_final(main_study(rows))] for n in _values(f, "n"))),
    ("cubic_bias.png", cubic_bias,
     lambda rows: len(_values(main_study(_cubic_rows(rows), free=("bias",)), "bias")) == 2),
    ("init.png", init_compare, lambda rows: bool(_init_rows(rows))),
)


# ----------------------------------------------------------------------------- optimizer study

# the same data and initialisation: the cell, the seed and the signal direction (a part's)
CLASSIFICATION_KEYS = ("n", "d", "d_over_n", "gamma", "alpha", "noise_rate", "width", "seed",
                       "signal")
SIGNAL_STYLES = {"e1": "-", "random": "--"}


class StudyParts(NamedTuple):
    """The rows of an optimizer study's parts (DIR/<part>), in the config's rule order.
    classification: {(spec, signal): rows}, signal 'e1' or 'random', each row tagged with its
    part's "signal" (pairing keys on it); subdirs: {(spec, signal): part directory name}."""

    baseline: str
    classification: dict  # {(optimizer spec, signal): rows}
    regression: dict  # {optimizer spec: rows}
    subdirs: dict  # {(optimizer spec, signal): subdir} of the classification parts


def study_parts(directory) -> StudyParts:
    """Read the parts an optimizer study's config.json lists (missing parts: no rows). A part
    recorded without a signal (a study from before the random direction) is e1."""
    directory = Path(directory)
    config = store.load_config(directory)
    if config is None or experiment_kind(config, directory) != "optimizers":
        raise ValueError(f"{directory} is not an optimizer study's directory")
    exp = config["experiment"]
    cls, reg, subdirs = {}, {}, {}
    order = {spec: i for i, spec in enumerate(exp["optimizers"])}  # JSON sorts the parts
    sig_order = {sig: i for i, sig in enumerate(SIGNAL_STYLES)}

    def rank(kv):
        part = kv[1]
        return (order.get(part["optimizer"], len(order)),
                sig_order.get(part.get("signal", "e1"), len(sig_order)))
    for sub, part in sorted(exp["parts"].items(), key=rank):
        path = directory / sub
        rows = store.load_results(path) if path.exists() else []
        if part["kind"] == "classification":
            key = (part["optimizer"], part.get("signal", "e1"))
            cls[key] = [{**r, "signal": key[1]} for r in rows]
            subdirs[key] = sub
        else:
            reg[part["optimizer"]] = rows
    return StudyParts(exp["baseline"], cls, reg, subdirs)


def _baseline_rows(sp: StudyParts) -> list:
    """The baseline's rows on every signal direction (pairing keys on the signal)."""
    return [r for (spec, _), rows in sp.classification.items() if spec == sp.baseline
            for r in rows]


def _reference(sp: StudyParts, signal: str) -> str:
    """The part a classification part is paired with: the baseline on the same direction."""
    return sp.subdirs.get((sp.baseline, signal), "none")


def _regression_view(rows) -> list:
    """The regression rows the study draws: the main study at the width with the most n."""
    return _widest_common(main_study(rows))


def optimizer_table(directory) -> list[str]:
    """The study's comparison as CSV lines: per classification rule and signal direction,
    valid runs, flagged, mean test error, the mean paired difference against the baseline on
    the same direction (store.paired_differences over all cells; `reference`: that baseline
    part) and median steps; per regression rule and n, the final-time means."""
    sp = study_parts(directory)
    base = _baseline_rows(sp)
    lines = ["experiment,optimizer,signal,runs,flagged,mean_test_error,diff_vs_" + sp.baseline
             + ",sem,pairs,median_steps,reference"]
    for (spec, sig), rows in sp.classification.items():
        ok = [r for r in rows if not store.is_flagged(r)]
        d = store.paired_differences(base, rows, CLASSIFICATION_KEYS, by=())[()] if rows \
            else store.Summary(math.nan, math.nan, 0, 0)
        err = np.mean([r["test_error"] for r in ok]) if ok else math.nan
        steps = np.median([r["steps"] for r in ok]) if ok else math.nan
        lines.append(f"classification,{spec},{sig},{len(ok)},{len(rows) - len(ok)},{err:.4f},"
                     f"{d.mean:+.4f},{d.sem:.4f},{d.count},{steps:g},{_reference(sp, sig)}")
    lines.append("experiment,optimizer,n,width,t,train_risk,excess_risk,weight_move,ntk_drift,"
                 "runs,diverged")
    for spec, rows in sp.regression.items():
        final = _final(_regression_view(rows)) if rows else []
        for n in _values(final, "n"):
            g = _where(final, n=n)
            ok = [r for r in g if not r["diverged"]]

            def mean(c, ok=ok):
                return float(np.mean([r[c] for r in ok])) if ok else math.nan
            lines.append(f"regression,{spec},{n},{g[0]['width']},{mean('t'):.4g},"
                         f"{mean('train_risk'):.4g},{mean('excess_risk'):.4g},"
                         f"{mean('weight_move'):.4g},{mean('ntk_drift'):.4g},{len(ok)},"
                         f"{len(g) - len(ok)}")
    return lines


def _difference_panel(fig, ax, diff: dict, title: str, vmax: float) -> None:
    """A heatmap of paired test-error differences per (n, d/n), diverging colours around 0;
    labels: the mean (3 decimals), '*' where a cell has flagged or unpaired runs."""
    from matplotlib.colors import TwoSlopeNorm

    n_x = sorted({k[0] for k in diff})
    dn_y = sorted({k[1] for k in diff})
    mean = np.full((len(dn_y), len(n_x)), np.nan)
    for (n, r), sm in diff.items():
        mean[dn_y.index(r), n_x.index(n)] = sm.mean
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    mesh = ax.pcolormesh(np.arange(len(n_x) + 1), np.arange(len(dn_y) + 1),
                         np.ma.masked_invalid(mean), cmap="RdBu_r", norm=norm,
                         edgecolors="0.75", linewidth=0.5)
    for (n, r), sm in diff.items():
        i, j = dn_y.index(r), n_x.index(n)
        text = "n/a" if sm.count == 0 else f"{sm.mean:+.3f}".replace("+0.000", "0")
        dark = np.isfinite(sm.mean) and abs(sm.mean) > 0.6 * vmax  # white on deep colours
        ax.text(j + 0.5, i + 0.5, text + ("*" if sm.flagged else ""), ha="center",
                va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(np.arange(len(n_x)) + 0.5, [f"{n:g}" for n in n_x], fontsize=7)
    ax.set_yticks(np.arange(len(dn_y)) + 0.5, [f"{r:g}" for r in dn_y], fontsize=7)
    ax.set_xlabel("n")
    ax.set_ylabel("d / n")
    ax.set_title(title, fontsize=8)
    fig.colorbar(mesh, ax=ax, label="test error difference", shrink=0.9)


def optimizer_study(directory, path) -> str:
    """The optimizer study in one PNG. Top: per rule other than the baseline and per signal
    direction (rows: e1, random), its paired test-error difference against the baseline on
    the same direction per (n, d/n) cell (mean over seeds; red: worse than GD), and mean test
    error against d/n per rule (colour) and direction (solid e1, dashed random; valid runs,
    pooled over n). Bottom: regression train risk, excess risk and weight movement against t
    (nominal for rules other than GD: eta * step), mean over seeds, per rule (colour) and n
    (line style)."""
    sp = study_parts(directory)
    base = _baseline_rows(sp)
    others = [k for k in sp.classification if k[0] != sp.baseline]
    specs = list(dict.fromkeys(spec for spec, _ in others))
    sigs = [g for g in SIGNAL_STYLES if any(k[1] == g for k in others)] or ["e1"]
    sigs += sorted({k[1] for k in others} - set(sigs))
    diffs = {k: store.paired_differences(base, sp.classification[k], CLASSIFICATION_KEYS)
             for k in others}
    finite = [abs(sm.mean) for d in diffs.values() for sm in d.values() if np.isfinite(sm.mean)]
    vmax = max(max(finite, default=0.0), 1e-3)
    ncols = len(specs) + 1
    fig = Figure(figsize=(5.0 * max(ncols, 3), 4.3 * len(sigs) + 4.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(4.3 * len(sigs), 4.9))
    mosaic = [[f"{spec}|{g}" for spec in specs] + ["line"] for g in sigs]
    axd = top.subplot_mosaic(mosaic)
    notes = []
    for spec in specs:
        for g in sigs:
            ax = axd[f"{spec}|{g}"]
            if (spec, g) not in diffs:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{spec}: no {g}-signal part\n(rotation-invariant: the e1 "
                        "part\nstands for every direction)", ha="center", va="center",
                        fontsize=8, color="0.4", transform=ax.transAxes)
                continue
            k = sum(sm.flagged for sm in diffs[(spec, g)].values())
            _difference_panel(top, ax, diffs[(spec, g)],
                              f"test error: {spec} minus {sp.baseline}, {g} signal\npaired by "
                              f"cell and seed with {_reference(sp, g)}", vmax)
            if k:
                notes.append(f"{spec} ({g} signal): {k} runs not converged/diverged (or "
                             f"without a {sp.baseline} partner on that signal): '*' cells, "
                             "left out")
    rules = list(dict.fromkeys(spec for spec, _ in sp.classification))
    colours = {spec: f"C{i}" for i, spec in enumerate(rules)}
    ax = axd["line"]
    for (spec, g), rows in sp.classification.items():
        agg = store.aggregate(rows, by="d_over_n") if rows else {}
        if agg:
            x = np.array(list(agg))
            m = np.array([sm.mean for sm in agg.values()])
            e = np.array([sm.sem for sm in agg.values()])
            ax.errorbar(x, m, yerr=np.nan_to_num(e), color=colours[spec], marker="o", ms=4,
                        capsize=3, ls=SIGNAL_STYLES.get(g, ":"), label=f"{spec}, {g} signal")
    ax.set_xlabel("d / n")
    ax.set_ylabel("mean test error (valid runs, pooled over n)")
    ax.set_title("classification: test error per rule\n(solid: signal e1, dashed: random "
                 "direction)", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    raxes = list(bottom.subplots(1, 3, squeeze=False)[0])
    views = {spec: _regression_view(rows) for spec, rows in sp.regression.items() if rows}
    styles = ("-", "--", ":", "-.")
    for value, ax in zip(("train_risk", "excess_risk", "weight_move"), raxes):
        for i, (spec, rows) in enumerate(views.items()):
            colour = colours.get(spec, f"C{i}")
            for j, n in enumerate(_values(rows, "n")):
                c = mean_curves(_where(rows, n=n), value, x="t", positive_x=True).get(())
                if c is not None:
                    _draw(ax, c, f"{spec}, n = {n}", colour, ls=styles[j % len(styles)],
                          logy=True)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(r"$t = \eta_{GD} \cdot$ step (nominal for rules other than sgd)")
        ax.set_title(f"regression: {value.replace('_', ' ')}", fontsize=8)
        if value == "train_risk" and views:
            nv = next(iter(views.values()))[0]["noise_var"]
            ax.axhline(nv, color="0.5", lw=0.8, ls=":", label="noise variance")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for spec, rows in views.items():
        bad = diverged_runs(rows)
        if bad:
            notes.append(f"regression {spec}: {len(bad)} runs diverged, left out")
    first = next(iter(views.values()), [])
    sub = _subset_label(first) if first else ""
    top.suptitle("Beyond the theorems' optimizer (the theorems cover GD / gradient flow only)"
                 "\nclassification: Figure 1 grid, stop at zero training error; signal on e1 "
                 "(published) and, for rules that are not rotation-invariant, on a random "
                 "direction, each paired with GD on the same direction and data", fontsize=9)
    bottom.suptitle("regression: " + sub.replace("\n", " ") + "; " + BAND_NOTE, fontsize=8)
    _footnote(fig, notes)
    return _save(fig, path)
