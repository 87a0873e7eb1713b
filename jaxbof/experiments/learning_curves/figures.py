"""The learning-curve pictures and table: measured excess risk of kernel ridge regression with
its standard error against the eigenlearning prediction, per ridge; the predicted learnability
of each degree against n (the staircase); the tempered comparison at one n (network, kernel
gradient flow, prediction against t). NumPy, SciPy and matplotlib (no JAX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, stats, store


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
            lines.append(
                f"{ridge:g},{n},{s.mean:.5g},{s.sem:.2g},{p:.5g},{gap:+.2f},"
                f"{(p - s.mean) / s.mean:+.4f},{s.count}"
            )
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
        gx.errorbar(
            n, (pred - mean) / mean, yerr=sem / mean, fmt="o-", ms=4, color=f"C{i}", label=label
        )
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="excess risk ||f - f*||^2")
    ax.legend(fontsize=7)
    gx.axhline(0.0, color="k", lw=0.8)
    gx.set(xscale="log", xlabel="n", ylabel="(predicted - measured) / measured")
    gx.set_title("error bars: 1 s.e. of the measurement", fontsize=8)
    fig.suptitle(
        "Kernel ridge regression against the eigenlearning prediction"
        + (f"\n{title}" if title else ""),
        fontsize=9,
    )
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
            ax.plot(ns, L[:, k], style, color=f"C{k}", label=f"k = {k}" if style == "-" else None)
    ax.plot([], [], "k-", label="ridgeless")
    ax.plot([], [], "k--", label=f"ridge = {max(config['ridges_over_n']):g} n")
    ax.set(xscale="log", xlabel="n", ylabel="learnability L_k", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(
        f"Predicted learnability per degree, {config['kernel']} on S^{config['d'] - 1}"
        + (f"\n{title}" if title else ""),
        fontsize=9,
    )
    return draw.save(fig, path)


def _series(rows, by, value, flags=None) -> dict:
    """{group: (t, mean, sem)} of `value` against t, per `by` (a column, or None: one group)."""
    out: dict = {}
    cols = ("t",) if by is None else (by, "t")
    for key, s in stats.aggregate(rows, by=cols, value=value, flags=flags or {}).items():
        group = None if by is None else key[0]
        out.setdefault(group, []).append((key[-1], s.mean, s.sem))
    return {g: tuple(np.array(c, float) for c in zip(*v)) for g, v in out.items()}


def tempered_curves(directory) -> dict | None:
    """The tempered comparison of a learning-curves run: {"kernel": {column: (t, mean, sem)},
    "predicted": {column: (t, value)}, "network": {width: {column: (t, mean, sem)}},
    "limit": {column: (mean, sem, predicted)}, "noise_var", "n", "flags"}; None without it."""
    flow_dir, net_dir = Path(directory) / "kernel-flow", Path(directory) / "network"
    flow = store.load_results(flow_dir) if (flow_dir / store.RESULTS).exists() else []
    if not flow:
        return None
    cfg = store.load_config(flow_dir)["experiment"]["config"]  # pyright: ignore[reportOptionalSubscript] - flow ran
    out = {
        "n": cfg["n"],
        "noise_var": cfg["noise"] ** 2 / 3,
        "kernel": {},
        "predicted": {},
        "network": {},
        "limit": {},
    }
    finite = [r for r in flow if np.isfinite(r["t"])]
    limit = [r for r in flow if np.isinf(r["t"])]
    for col in ("excess_risk", "train_risk"):
        out["kernel"][col] = _series(finite, None, col)[None]
        pred = {r["t"]: r[f"predicted_{col}"] for r in finite}
        t = np.array(sorted(pred))
        out["predicted"][col] = (t, np.array([pred[v] for v in t]))
        if limit:
            m, e = stats.mean_sem([r[col] for r in limit])
            out["limit"][col] = (m, e, limit[0][f"predicted_{col}"])
    net = store.load_results(net_dir) if (net_dir / store.RESULTS).exists() else []
    flags = stats.flags_of(store.load_config(net_dir)) if net else {}
    out["flags"] = sum(stats.is_flagged(r, flags) for r in net if r.get("final"))
    net = [r for r in net if r["t"] > 0]
    for col in ("excess_risk", "train_risk"):
        for width, series in _series(net, "width", col, flags).items():
            out["network"].setdefault(width, {})[col] = series
    return out


def tempered_table(curves) -> list[str]:
    """Per curve: its minimum of the excess risk (and where), its value at the network's last
    time, and the interpolation limit."""
    lines = ["curve,min_excess_risk,t_at_min,t_last,excess_risk_at_t_last,train_risk_at_t_last"]
    t_last = max((s["excess_risk"][0][-1] for s in curves["network"].values()), default=None)

    def at(series, t):
        return float(np.interp(np.log(t), np.log(series[0]), series[1]))

    named = [
        (f"network M={w}", s["excess_risk"], s["train_risk"])
        for w, s in sorted(curves["network"].items())
    ]
    named.append(("kernel flow", curves["kernel"]["excess_risk"], curves["kernel"]["train_risk"]))
    named.append(
        (
            "eigenlearning at ridge n/t",
            curves["predicted"]["excess_risk"],
            curves["predicted"]["train_risk"],
        )
    )
    for name, ex, tr in named:
        i = int(np.argmin(ex[1]))
        last = (
            f"{t_last:g},{at(ex, t_last):.4g},{at(tr, t_last):.4g}" if t_last is not None else ",,"
        )
        lines.append(f"{name},{ex[1][i]:.4g},{ex[0][i]:.4g},{last}")
    if "excess_risk" in curves["limit"]:
        m, e, p = curves["limit"]["excess_risk"]
        lines.append(f"kernel ridgeless (t = inf),{m:.4g} +- {e:.2g},inf,,,")
        lines.append(f"eigenlearning ridgeless (E_0),{p:.4g},inf,,,")
    return lines


def tempered(directory, path, title: str | None = None) -> str | None:
    """Excess and training risk against t at one n: the networks (mean over seeds per width),
    gradient flow on the infinite-width kernel (mean, 1 s.e. band), the eigenlearning
    prediction at ridge n / t, and at the right edge the interpolation limit (ridgeless kernel
    regression, measured and predicted through E_0). None when the run has no such part."""
    curves = tempered_curves(directory)
    if curves is None:
        return None
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, col, label in zip(
        axes, ("excess_risk", "train_risk"), ("excess risk ||f_t - f*||^2", "training risk")
    ):
        for i, (width, s) in enumerate(sorted(curves["network"].items())):
            t, m, e = s[col]
            ax.plot(t, m, "-", color=f"C{i + 2}", lw=1.4, label=f"network, M = {width}")
        t, m, e = curves["kernel"][col]
        ax.plot(t, m, "-", color="C0", lw=1.2, label="kernel gradient flow (M = inf)")
        ax.fill_between(t, m - e, m + e, color="C0", alpha=0.25, lw=0)
        t, p = curves["predicted"][col]
        ax.plot(t, p, "--", color="C1", lw=1.2, label="eigenlearning at ridge n / t")
        if col == "excess_risk" and col in curves["limit"]:  # the limit's training risk is 0
            m, e, p = curves["limit"][col]
            if m > 0:
                ax.axhspan(m - e, m + e, color="C0", alpha=0.15, lw=0)
                ax.axhline(
                    m,
                    color="C0",
                    ls=":",
                    lw=1,
                    label=f"ridgeless kernel regression (t = inf): {m:.4f}",
                )
            if p > 0:
                ax.axhline(
                    p, color="C1", ls="-.", lw=1, label=f"eigenlearning ridgeless (E_0): {p:.4f}"
                )
        if col == "train_risk":
            ax.axhline(
                curves["noise_var"],
                color="k",
                lw=0.8,
                ls="--",
                label="noise variance (t = inf: 0, interpolation)",
            )
        ax.set(xscale="log", yscale="log", xlabel="t", ylabel=label)
        ax.legend(fontsize=6)
    note = f"; {curves['flags']} flagged runs left out" if curves["flags"] else ""
    fig.suptitle(
        f"Tempered overfitting at n = {curves['n']}: network, kernel and prediction"
        f"{note}" + (f"\n{title}" if title else ""),
        fontsize=9,
    )
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    experiment = config.get("experiment", {})
    if experiment.get("part") == "kernel-flow":  # the part's own directory: its parent draws
        directory, out = Path(directory).parent, Path(out)
        path = tempered(directory, out / "tempered.png")
        return [path] if path else []
    rows = draw.results(directory)
    title = f"{experiment.get('name') or Path(directory).name} ({experiment.get('precision')})"
    out = Path(out)
    paths = [
        learning_curves(rows, out / "learning_curves.png", title),
        learnability(experiment["config"], out / "learnability.png", title=title),
    ]
    network = (
        (store.load_config(Path(directory) / "network") or {})
        if (Path(directory) / "network" / "config.json").exists()
        else {}
    )
    precision = network.get("experiment", {}).get("precision", "float32")
    path = tempered(
        directory,
        out / "tempered.png",
        f"{experiment.get('name') or ''}: kernel "
        f"and prediction in float64 on the host; networks in {precision} (the engine)",
    )
    return paths + ([path] if path else [])
