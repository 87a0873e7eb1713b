"""Figures of the regression experiment (Park et al. 2024): the approximation/estimation
decomposition against time, the staircase, the final excess risk against n, the NTK-regime
diagnostics. Built on `mean_curves`, which averages over seeds and leaves diverged runs out.
NumPy and matplotlib only.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, stats
from jaxbof.experiments.regression.schema import COORDINATES

# ----------------------------------------------------------------------------- regression
# Park et al. 2024: rows are one per (cell,
# recorded time). A run is one cell (the coordinates below); a run that diverged anywhere is
# left out of every mean, all its rows, and counted in the figure's footnote.

REG_COORDS = COORDINATES  # the columns that name a run
# The main study, column by column: the preferred value where present, else the most common.
MAIN_STUDY = (
    ("init", "antisymmetric"),
    ("bias", False),
    ("train_outer", False),
    ("target", None),
    ("d", None),
    ("noise", None),
    ("noise_kind", None),
)
BAND_NOTE = "lines: mean over seeds; shaded: ± 1 s.e.m. (where >= 2 seeds)"


class Curve(NamedTuple):
    """One column averaged over runs (seeds) at each x; diverged runs are never in it."""

    x: np.ndarray
    mean: np.ndarray
    sem: np.ndarray  # std(ddof=1) / sqrt(count); nan where count < 2
    count: np.ndarray  # runs averaged at each x


def run_key(row: Mapping) -> tuple:
    """The run (cell) a row belongs to: its coordinates."""
    return tuple(row.get(c) for c in REG_COORDS)


def diverged_runs(rows) -> set:
    return {run_key(r) for r in rows if r.get("diverged")}


def mean_curves(
    rows, value: str, by: Sequence[str] = (), x: str = "t", positive_x: bool = False
) -> dict:
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
        ms = [stats.mean_sem(v) for _, v in pts]
        out[key] = Curve(
            np.array([p[0] for p in pts]),
            np.array([m for m, _ in ms]),
            np.array([s for _, s in ms]),
            np.array([len(v) for _, v in pts]),
        )
    return out


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
    return sorted(
        int(c[5:])
        for c in cols
        if c.startswith("coef_")
        and c[5:].isdigit()
        and f"pop_{c}" in cols
        and any(math.isfinite(float(r[f"pop_{c}"])) for r in rows)
    )


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
    return [
        {**r, "ntk_drift": drift.get(run_key(r), math.nan), "diverged": run_key(r) in bad}
        for r in rows
        if r["final"]
    ]


def _kernel(bias: bool, train_outer: bool) -> str:
    return ("both layers" if train_outer else "first layer") + (" + bias" if bias else "")


def _values(rows, column: str) -> list:
    return sorted({r[column] for r in rows})


_SUBSET = (
    ("target", "f* = {}", "f* in {{{}}}"),
    ("init", "{} init", "init in {{{}}}"),
    ("bias", None, "with and without bias"),
    ("train_outer", None, "kernels differ"),
    ("d", "d = {}", "d in {{{}}}"),
    ("n", "n = {}", "n in {{{}}}"),
    ("width", "M = {}", "M in {{{}}}"),
    ("noise_kind", None, None),
    ("noise", "noise level {}", "noise levels {{{}}}"),
)


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
    parts.append(
        f"seed{'s' * (len(seeds) != 1)} " + ", ".join(map(str, seeds))
        if len(seeds) <= 6
        else f"{len(seeds)} seeds"
    )
    return "\n".join(textwrap.wrap("; ".join(filter(None, parts)), 110))


def _diverged_note(rows) -> str | None:
    bad = sorted(diverged_runs(rows), key=str)
    if not bad:
        return None
    col = {c: REG_COORDS.index(c) for c in ("n", "width", "seed", "init", "bias")}
    where = ", ".join(
        f"(n={k[col['n']]}, M={k[col['width']]}, seed={k[col['seed']]})" for k in bad[:6]
    ) + (", ..." if len(bad) > 6 else "")
    return f"{len(bad)} of {_n_runs(rows)} runs diverged, left out of every mean: {where}"


def _draw(
    ax,
    curve: Curve,
    label: str | None,
    color,
    ls: str = "-",
    logy: bool = True,
    bars: bool = False,
    marker: str | None = None,
):
    """A mean curve with its s.e.m. as a band (bars=False) or error bars; on a log y axis
    means <= 0 are not drawn. Returns whether anything was."""
    ok = np.isfinite(curve.mean) & ((curve.mean > 0) if logy else True)
    if not ok.any():
        return False
    x, m, e = curve.x[ok], curve.mean[ok], curve.sem[ok]
    if bars:
        ax.errorbar(
            x,
            m,
            yerr=np.nan_to_num(e),
            color=color,
            ls=ls,
            marker=marker or "o",
            ms=4,
            capsize=3,
            label=label,
        )
    else:
        ax.plot(x, m, color=color, ls=ls, marker=marker, ms=3, label=label)
        band = np.isfinite(e) & ((m - e > 0) if logy else True)
        if band.any():
            ax.fill_between(x, m - e, m + e, where=band, color=color, alpha=0.2, lw=0)
    return True


def _seeds(curve: Curve) -> str:
    k = int(curve.count.max())
    return f"{k} seed{'s' * (k != 1)}"


def _curves_on(
    ax,
    rows,
    value: str,
    by: Sequence[str],
    label: Callable,
    *,
    x: str = "t",
    ls: str = "-",
    logy: bool = True,
    bars: bool = False,
    colors=None,
    seeds: bool = True,
) -> dict:
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
    draw.footnote(fig, [*notes, _diverged_note(rows)])
    return draw.save(fig, path)


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
        _curves_on(
            ax,
            grp,
            "approx_error",
            (),
            lambda: f"exact approx. error: {name}",
            colors={(): f"C{i}"},
            seeds=False,
        )
        big = _biggest(main_study(grp))
        _curves_on(
            ax,
            big,
            "excess_risk",
            ("n", "width"),
            lambda n, m: f"measured excess risk, n = {n}, M = {m}",
            ls="--",
            colors={(big[0]["n"], big[0]["width"]): f"C{i}"},
        )
        shown += grp
    ax.set_ylabel("squared L2 error on the sphere (log scale)")
    return _finish(
        fig,
        [ax],
        "Approximation error of the population flow (exact) vs the trained net's excess risk",
        title,
        shown,
        path,
        [
            "exact: sum_k exp(-2 t mu_k) c_k^2; measured (dashed): Monte Carlo on "
            "fresh test points",
            BAND_NOTE,
        ],
    )


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
        _curves_on(
            axes[1],
            at_n,
            "estimation_error",
            ("width",),
            "M = {}".format,
            colors={(m,): f"C{j}" for j, m in enumerate(_values(main, "width"), 3)},
        )
        axes[1].set_title(f"per M at n = {at_n[0]['n']}", fontsize=8)
    axes[0].set_ylabel(r"estimation error $\|f_t - f_t^{pop}\|^2$ (log scale)")
    return _finish(
        fig,
        axes,
        "Estimation error: should shrink as n grows (large M) and grow as M shrinks",
        title,
        at_m + at_n if two else at_m,
        path,
        [BAND_NOTE],
    )


def risks(rows, path, title: str | None = None) -> str:
    """Training risk (noisy labels, dashed) and excess risk (solid) against t, one colour per
    n, at the main study's largest common width, with the noise variance: training risk well
    below it while the excess risk stays small is benign overfitting."""
    sub = _widest_common(main_study(rows))
    fig, (ax,) = _panels()
    _curves_on(ax, sub, "excess_risk", ("n",), "excess risk, n = {}".format)
    _curves_on(ax, sub, "train_risk", ("n",), "training risk, n = {}".format, ls="--", seeds=False)
    for v in _values(sub, "noise_var"):
        ax.axhline(v, color="black", lw=0.8, ls=":", label=f"noise variance {v:.3g}")
    ax.set_ylabel("risk (log scale)")
    return _finish(
        fig,
        [ax],
        "Benign overfitting: training risk (dashed) vs excess risk (solid)",
        title,
        sub,
        path,
        [
            "training risk below the noise variance = the noise is being fitted; "
            "excess risk on fresh noise-free points",
            BAND_NOTE,
        ],
    )


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
        _curves_on(ax, sub, f"coef_{K}", (), lambda: f"coef_{K} (network)", logy=False, colors=col)
        _curves_on(
            ax,
            sub,
            f"pop_coef_{K}",
            (),
            lambda: f"pop_coef_{K} (population flow)",
            ls="--",
            logy=False,
            colors=col,
            seeds=False,
        )
        c = coefs.get(K, math.nan)
        if math.isfinite(c) and c:
            ax.axhline(c, color=f"C{i}", lw=0.6, ls=":")
            mu = _rate(sub, K, c)
            if math.isfinite(mu) and mu > 0:
                ax.axvline(
                    1 / mu, color=f"C{i}", lw=0.8, ls=":", label=f"t = 1/mu_{K} = {1 / mu:.3g}"
                )
    ax.set_ylabel(r"coefficient on $Y_K(\cdot\,; \xi_K)$")
    return _finish(
        fig,
        [ax],
        "Spectral bias: degree K is learned at t ~ 1/mu_K",
        title,
        sub,
        path,
        ["dotted horizontals: target coefficients c_K", BAND_NOTE],
    )


def final_excess(rows, path, title: str | None = None) -> str:
    """Final excess risk (each run's last row) against n, a line per width M (log-log, error
    bars over seeds), with the approximation error at the final time (the excess risk a
    vanishing estimation error would leave): far above it, M is too small for n."""
    sub = _final(main_study(rows))
    fig, (ax,) = _panels()
    excess = _curves_on(ax, sub, "excess_risk", ("width",), "M = {}".format, x="n", bars=True)
    floor = _curves_on(
        ax,
        sub,
        "approx_error",
        (),
        lambda: "approx. error at the final t",
        x="n",
        ls=":",
        colors={(): "black"},
        seeds=False,
    )
    notes = ["error bars: ± 1 s.e.m. over seeds (where >= 2)"]
    low = min(
        (c.mean[c.mean > 0].min() for c in excess.values() if (c.mean > 0).any()), default=math.nan
    )
    approx = [v for c in floor.values() for v in c.mean if v > 0]
    if approx and min(approx) < low / 100:  # would squash the excess risks into a line
        ax.set_ylim(bottom=low / 30)
        span = " to ".join(dict.fromkeys(f"{v:.2g}" for v in (min(approx), max(approx))))
        notes.append(f"approximation error at the final t: {span} (below the axis where not drawn)")
    ax.set_xscale("log")
    ax.set_xlabel("n (training samples, log scale)")
    ax.set_ylabel("final excess risk (log scale)")
    return _finish(
        fig,
        [ax],
        "Final excess risk over (n, M): near the approximation error "
        "where the mechanism holds, far above it where M is too small",
        title,
        sub,
        path,
        notes,
    )


def ntk_regime(rows, path, title: str | None = None) -> str:
    """Final weight movement max_j ||w_j(t) - w_j(0)|| and last recorded NTK drift
    ||H_t - H_0|| / ||H_0|| against width M (log-log), a line per n with its fitted slope,
    main study; the NTK regime predicts slope -1/2."""
    sub = _final(main_study(rows))
    fig, axes = _panels(2)
    for ax, value, name in zip(
        axes,
        ("weight_move", "ntk_drift"),
        (r"$\max_j \|w_j(t) - w_j(0)\|$", r"$\|H_t - H_0\| / \|H_0\|$"),
    ):
        curves = mean_curves(sub, value, ("n",), x="width")
        for i, ((n,), c) in enumerate(curves.items()):
            fit = stats.fit_loglog_slope(c.x, c.mean)
            slope = f"slope {fit.slope:.3f}" if math.isfinite(fit.slope) else "no fit"
            _draw(ax, c, f"n = {n} ({_seeds(c)}): {slope}", f"C{i}", bars=True)
            if math.isfinite(fit.slope):
                ax.plot(c.x, fit.prefactor * c.x**fit.slope, ":", color=f"C{i}", lw=1)
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
    return _finish(
        fig,
        axes,
        "NTK regime checks against width (least-squares slopes in the legend; expect about -1/2)",
        title,
        sub,
        path,
        ["error bars: ± 1 s.e.m. over seeds (where >= 2)"],
    )


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
    _curves_on(
        ax, sub, "coef_3", ("bias",), lambda b: f"coef_3, {name(b)}", logy=False, colors=colors
    )
    _curves_on(
        ax,
        sub,
        "pop_coef_3",
        ("bias",),
        lambda b: f"pop_coef_3, {name(b)}",
        ls="--",
        logy=False,
        colors=colors,
        seeds=False,
    )
    c3 = target_coefs(sub[0]["target"])[3]
    ax.axhline(c3, color="black", lw=0.6, ls=":", label=f"c_3 = {c3:g}")
    ax.set_ylabel(r"coefficient on $Y_3(\cdot\,; \xi_3)$")
    return _finish(
        fig,
        [ax],
        "Degree 3 with and without bias (no bias: mu_3 = 0, never learned)",
        title,
        sub,
        path,
        [BAND_NOTE],
    )


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
    for ax, value, name in zip(
        axes, ("excess_risk", "kernel_gap"), ("excess risk", r"kernel gap $\|f_t - f_t^{lin}\|^2$")
    ):
        _curves_on(ax, sub, value, ("init",), "{} init".format, colors=colors)
        ax.set_ylabel(name + " (log scale)")
    return _finish(
        fig,
        axes,
        "Initialization: antisymmetric (f_0 = 0) vs Gaussian",
        title,
        sub,
        path,
        [BAND_NOTE],
    )


def _positive_t(rows) -> bool:
    return any(float(r["t"]) > 0 for r in rows)


# (file name, function, does the rows' data support the picture)
REGRESSION_FIGURES = (
    ("approx_error.png", approx_error, _positive_t),
    (
        "estimation_error.png",
        estimation_error,
        lambda rows: len(_values(_widest_common(main_study(rows)), "n")) >= 2,
    ),
    ("risks.png", risks, lambda rows: _positive_t(main_study(rows))),
    ("staircase.png", staircase, lambda rows: bool(_degrees(_biggest(main_study(rows))))),
    (
        "final_excess.png",
        final_excess,
        lambda rows: len(_values(_final(main_study(rows)), "n")) >= 2,
    ),
    (
        "ntk_regime.png",
        ntk_regime,
        lambda rows: any(
            len(_values(_where(f, n=n), "width")) >= 2
            for f in [_final(main_study(rows))]
            for n in _values(f, "n")
        ),
    ),
    (
        "cubic_bias.png",
        cubic_bias,
        lambda rows: len(_values(main_study(_cubic_rows(rows), free=("bias",)), "bias")) == 2,
    ),
    ("init.png", init_compare, lambda rows: bool(_init_rows(rows))),
)


def figures(directory, config, out) -> list[str]:
    """Each entry of REGRESSION_FIGURES whose test the rows pass."""
    rows = draw.results(directory)
    title = draw.describe(config.get("experiment"), Path(directory).name)
    return [
        fn(rows, Path(out) / name, title=title)
        for name, fn, supported in REGRESSION_FIGURES
        if supported(rows)
    ]
