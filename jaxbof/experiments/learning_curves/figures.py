"""The learning-curve pictures and table: measured excess risk of kernel ridge regression with
its standard error against the eigenlearning prediction, per ridge; the predicted learnability
of each degree against n (the staircase). NumPy, SciPy and matplotlib (no JAX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, stats


def _curves(rows) -> dict:
    """{ridge_over_n: [(n, Summary of excess_risk, predicted excess risk), ...]} sorted by n."""
    out: dict = {}
    agg = stats.aggregate(rows, by=("ridge_over_n", "n"), value="excess_risk", flags={})
    pred = {(r["ridge_over_n"], r["n"]): r["predicted_excess_risk"] for r in rows}
    for (ridge, n), s in agg.items():
        out.setdefault(ridge, []).append((n, s, pred[(ridge, n)]))
    return out


def table(rows) -> list[str]:
    """Per ridge and n: measured mean and s.e., predicted, gap in s.e. and relative."""
    lines = ["ridge_over_n,n,measured,sem,predicted,gap_sem,gap_relative,seeds"]
    for ridge, points in _curves(rows).items():
        for n, s, p in points:
            gap = (p - s.mean) / s.sem if s.sem > 0 else float("nan")
            lines.append(f"{ridge:g},{n},{s.mean:.5g},{s.sem:.2g},{p:.5g},{gap:+.2f},"
                         f"{(p - s.mean) / s.mean:+.4f},{s.count}")
    return lines


def learning_curves(rows, path, title: str | None = None) -> str:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax, gx = fig.subplots(1, 2)
    for i, (ridge, points) in enumerate(_curves(rows).items()):
        n = np.array([p[0] for p in points], float)
        mean = np.array([p[1].mean for p in points])
        sem = np.nan_to_num(np.array([p[1].sem for p in points]))
        pred = np.array([p[2] for p in points])
        label = "ridgeless" if ridge == 0 else f"ridge = {ridge:g} n"
        ax.errorbar(n, mean, yerr=sem, fmt="o", ms=4, color=f"C{i}", label=f"{label}: KRR")
        ax.plot(n, pred, "-", color=f"C{i}", lw=1.2, label=f"{label}: eigenlearning")
        gx.errorbar(n, (pred - mean) / mean, yerr=sem / mean, fmt="o-", ms=4, color=f"C{i}",
                    label=label)
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="excess risk ||f - f*||^2")
    ax.legend(fontsize=7)
    gx.axhline(0.0, color="k", lw=0.8)
    gx.set(xscale="log", xlabel="n", ylabel="(predicted - measured) / measured")
    gx.set_title("error bars: 1 s.e. of the measurement", fontsize=8)
    fig.suptitle("Kernel ridge regression against the eigenlearning prediction"
                 + (f"\n{title}" if title else ""), fontsize=9)
    return draw.save(fig, path)


def learnability(config: dict, path, ns=None, title: str | None = None) -> str:
    """Predicted L_k = mu_k / (mu_k + kappa) of degrees k = 0..6 against n (ridgeless and the
    largest ridge of the run): each degree is learned once n passes the modes above it."""
    from jaxbof import eigenlearning

    levels = eigenlearning.sphere_levels(config["kernel"], config["d"], config["k_max"])
    ns = np.unique(np.geomspace(1, 4 * max(config["ns"]), 200).round()) if ns is None else ns
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for style, r in (("-", 0.0), ("--", max(config["ridges_over_n"]))):
        L = []
        for n in ns:
            try:
                L.append(eigenlearning.predict(n, levels, [], ridge=r * n).learnability[:7])
            except ValueError:  # ridgeless beyond the modes of the truncated spectrum
                L.append(np.full(7, np.nan))
        L = np.array(L)
        for k in range(7):
            if np.all(np.nan_to_num(L[:, k]) == 0):
                continue  # a zero level (odd k >= 3 without a bias)
            ax.plot(ns, L[:, k], style, color=f"C{k}",
                    label=f"k = {k}" if style == "-" else None)
    ax.plot([], [], "k-", label="ridgeless")
    ax.plot([], [], "k--", label=f"ridge = {max(config['ridges_over_n']):g} n")
    ax.set(xscale="log", xlabel="n", ylabel="learnability L_k", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Predicted learnability per degree, {config['kernel']} on S^{config['d'] - 1}"
                 + (f"\n{title}" if title else ""), fontsize=9)
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    rows = draw.results(directory)
    experiment = config.get("experiment", {})
    title = f"{experiment.get('name') or Path(directory).name} ({experiment.get('precision')})"
    out = Path(out)
    return [learning_curves(rows, out / "learning_curves.png", title),
            learnability(experiment["config"], out / "learnability.png", title=title)]
