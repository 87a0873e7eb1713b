"""Figures of the optimizer study: the table of paired differences against the baseline rule
and the comparison picture. NumPy and matplotlib only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, stats, store
from jaxbof.experiments.classification.cells import COORDINATES
from jaxbof.experiments.regression.figures import (
    BAND_NOTE,
    _draw,
    _final,
    _subset_label,
    _values,
    _where,
    _widest_common,
    diverged_runs,
    main_study,
    mean_curves,
)

# ----------------------------------------------------------------------------- optimizer study

# the same data and initialisation: the cell, the seed and the signal direction (a part's)
CLASSIFICATION_KEYS = COORDINATES + ("signal",)
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
    if config is None or config.get("experiment", {}).get("kind") != "optimizers":
        raise ValueError(f"{directory} is not an optimizer study's directory")
    exp = config["experiment"]
    cls, reg, subdirs = {}, {}, {}
    order = {spec: i for i, spec in enumerate(exp["optimizers"])}  # JSON sorts the parts
    sig_order = {sig: i for i, sig in enumerate(SIGNAL_STYLES)}

    def rank(kv):
        part = kv[1]
        return (
            order.get(part["optimizer"], len(order)),
            sig_order.get(part.get("signal", "e1"), len(sig_order)),
        )

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
    return [r for (spec, _), rows in sp.classification.items() if spec == sp.baseline for r in rows]


def _reference(sp: StudyParts, signal: str) -> str:
    """The part a classification part is paired with: the baseline on the same direction."""
    return sp.subdirs.get((sp.baseline, signal), "none")


def _regression_view(rows) -> list:
    """The regression rows the study draws: the main study at the width with the most n."""
    return _widest_common(main_study(rows))


def optimizer_table(directory) -> list[str]:
    """The study's comparison as CSV lines: per classification rule and signal direction,
    valid runs, flagged, mean test error, the mean paired difference against the baseline on
    the same direction (stats.paired_differences over all cells; `reference`: that baseline
    part) and median steps; per regression rule and n, the final-time means."""
    sp = study_parts(directory)
    base = _baseline_rows(sp)
    lines = [
        "experiment,optimizer,signal,runs,flagged,mean_test_error,diff_vs_"
        + sp.baseline
        + ",sem,pairs,median_steps,reference"
    ]
    for (spec, sig), rows in sp.classification.items():
        ok = [r for r in rows if not stats.is_flagged(r)]
        d = (
            stats.paired_differences(base, rows, CLASSIFICATION_KEYS, by=(), value="test_error")[()]
            if rows
            else stats.Summary(math.nan, math.nan, 0, 0)
        )
        err = np.mean([r["test_error"] for r in ok]) if ok else math.nan
        steps = np.median([r["steps"] for r in ok]) if ok else math.nan
        lines.append(
            f"classification,{spec},{sig},{len(ok)},{len(rows) - len(ok)},{err:.4f},"
            f"{d.mean:+.4f},{d.sem:.4f},{d.count},{steps:g},{_reference(sp, sig)}"
        )
    lines.append(
        "experiment,optimizer,n,width,t,train_risk,excess_risk,weight_move,ntk_drift,runs,diverged"
    )
    for spec, rows in sp.regression.items():
        final = _final(_regression_view(rows)) if rows else []
        for n in _values(final, "n"):
            g = _where(final, n=n)
            ok = [r for r in g if not r["diverged"]]

            def mean(c, ok=ok):
                return float(np.mean([r[c] for r in ok])) if ok else math.nan

            lines.append(
                f"regression,{spec},{n},{g[0]['width']},{mean('t'):.4g},"
                f"{mean('train_risk'):.4g},{mean('excess_risk'):.4g},"
                f"{mean('weight_move'):.4g},{mean('ntk_drift'):.4g},{len(ok)},"
                f"{len(g) - len(ok)}"
            )
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
    mesh = ax.pcolormesh(
        np.arange(len(n_x) + 1),
        np.arange(len(dn_y) + 1),
        np.ma.masked_invalid(mean),
        cmap="RdBu_r",
        norm=norm,
        edgecolors="0.75",
        linewidth=0.5,
    )
    for (n, r), sm in diff.items():
        i, j = dn_y.index(r), n_x.index(n)
        text = "n/a" if sm.count == 0 else f"{sm.mean:+.3f}".replace("+0.000", "0")
        dark = np.isfinite(sm.mean) and abs(sm.mean) > 0.6 * vmax  # white on deep colours
        ax.text(
            j + 0.5,
            i + 0.5,
            text + ("*" if sm.flagged else ""),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if dark else "black",
        )
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
    diffs = {
        k: stats.paired_differences(
            base,
            sp.classification[k],
            CLASSIFICATION_KEYS,
            by=("n", "d_over_n"),
            value="test_error",
        )
        for k in others
    }
    finite = [abs(sm.mean) for d in diffs.values() for sm in d.values() if np.isfinite(sm.mean)]
    vmax = max(max(finite, default=0.0), 1e-3)
    ncols = len(specs) + 1
    fig = Figure(figsize=(5.0 * max(ncols, 3), 4.3 * len(sigs) + 4.9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(4.3 * len(sigs), 4.9))  # pyright: ignore[reportGeneralTypeIssues] - an array of 2
    mosaic = [[f"{spec}|{g}" for spec in specs] + ["line"] for g in sigs]
    axd = top.subplot_mosaic(mosaic)
    notes = []
    for spec in specs:
        for g in sigs:
            ax = axd[f"{spec}|{g}"]
            if (spec, g) not in diffs:
                ax.set_axis_off()
                ax.text(
                    0.5,
                    0.5,
                    f"{spec}: no {g}-signal part\n(rotation-invariant: the e1 "
                    "part\nstands for every direction)",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="0.4",
                    transform=ax.transAxes,
                )
                continue
            k = sum(sm.flagged for sm in diffs[(spec, g)].values())
            _difference_panel(
                top,
                ax,
                diffs[(spec, g)],
                f"test error: {spec} minus {sp.baseline}, {g} signal\npaired by "
                f"cell and seed with {_reference(sp, g)}",
                vmax,
            )
            if k:
                notes.append(
                    f"{spec} ({g} signal): {k} runs not converged/diverged (or "
                    f"without a {sp.baseline} partner on that signal): '*' cells, "
                    "left out"
                )
    rules = list(dict.fromkeys(spec for spec, _ in sp.classification))
    colours = {spec: f"C{i}" for i, spec in enumerate(rules)}
    ax = axd["line"]
    for (spec, g), rows in sp.classification.items():
        agg = stats.aggregate(rows, by="d_over_n", value="test_error") if rows else {}
        if agg:
            x = np.array(list(agg))
            m = np.array([sm.mean for sm in agg.values()])
            e = np.array([sm.sem for sm in agg.values()])
            ax.errorbar(
                x,
                m,
                yerr=np.nan_to_num(e),
                color=colours[spec],
                marker="o",
                ms=4,
                capsize=3,
                ls=SIGNAL_STYLES.get(g, ":"),
                label=f"{spec}, {g} signal",
            )
    ax.set_xlabel("d / n")
    ax.set_ylabel("mean test error (valid runs, pooled over n)")
    ax.set_title(
        "classification: test error per rule\n(solid: signal e1, dashed: random direction)",
        fontsize=8,
    )
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
                    _draw(ax, c, f"{spec}, n = {n}", colour, ls=styles[j % len(styles)], logy=True)
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
    top.suptitle(
        "Beyond the theorems' optimizer (the theorems cover GD / gradient flow only)"
        "\nclassification: Figure 1 grid, stop at zero training error; signal on e1 "
        "(published) and, for rules that are not rotation-invariant, on a random "
        "direction, each paired with GD on the same direction and data",
        fontsize=9,
    )
    bottom.suptitle("regression: " + sub.replace("\n", " ") + "; " + BAND_NOTE, fontsize=8)
    draw.footnote(fig, notes)
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    return [optimizer_study(directory, Path(out) / "optimizers.png")]
