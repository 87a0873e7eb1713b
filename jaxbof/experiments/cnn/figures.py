"""Figures of the CNN experiment, JAX-free: heatmaps of the mean test error and training loss
over (||mu||, d) (over (||mu||, n) when d is fixed) with the theory's boundary at the fitted
constant, signal learning against noise memorisation, and test error against ||mu|| at a few
dimensions with the Bayes error p marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from jaxbof import draw, stats
from jaxbof.experiments.cnn.boundary import crossings, fit_boundary, protocol_of

POOLABLE = ("n", "d")


def _axis(rows) -> str:
    """The heatmap's vertical axis: d, unless d is fixed and n varies."""
    return "n" if len({r["d"] for r in rows}) == 1 and len({r["n"] for r in rows}) > 1 else "d"


def _grid(rows, value: str, y: str):
    agg = stats.aggregate(rows, by=("signal", y), value=value)
    xs = sorted({k[0] for k in agg})
    ys = sorted({k[1] for k in agg})
    mean = np.full((len(ys), len(xs)), np.nan)
    for (sx, vy), s in agg.items():
        mean[ys.index(vy), xs.index(sx)] = s.mean
    return np.array(xs, float), np.array(ys, float), mean


def _edges(v):
    if len(v) == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def heatmap(
    rows, path, value: str, protocol=None, title: str | None = None, boundary: bool = True
) -> str:
    """Mean `value` over (||mu||, d); with `boundary`, the crossings of the fitted level (points)
    and the theory's boundary at the fitted C (line)."""
    y = _axis(rows)
    xs, ys, mean = _grid(rows, value, y)
    fig = Figure(figsize=(7.2, 5.2), layout="constrained")
    ax = fig.add_subplot()
    if value == "train_loss":
        positive = mean[np.isfinite(mean) & (mean > 0)]
        norm = LogNorm(positive.min(), positive.max()) if positive.size else None
        mesh = ax.pcolormesh(
            _edges(xs), _edges(ys), np.where(mean > 0, mean, np.nan), cmap=draw.CMAP, norm=norm
        )
    else:
        mesh = ax.pcolormesh(_edges(xs), _edges(ys), mean, cmap=draw.CMAP, vmin=0, vmax=0.5)
    fig.colorbar(mesh, ax=ax, label=f"mean {value.replace('_', ' ')}")
    notes = [draw.flag_note(rows)]
    if boundary:
        fit = fit_boundary(rows, protocol=protocol)
        cs = crossings(rows, fit.level, protocol)
        if cs:
            cx = [c.signal for c in cs]
            cy = [c.d if y == "d" else c.n for c in cs]
            ax.plot(
                cx,
                cy,
                "o",
                ms=3,
                mfc="none",
                mec="white",
                label=f"measured crossing of test error {fit.level:.3g}",
            )
            grid_y = np.linspace(ys[0], ys[-1], 200)
            n0 = cs[0].n
            d0 = cs[0].d
            line = fit.signal_at(n0, grid_y) if y == "d" else fit.signal_at(grid_y, d0)
            keep = line <= xs[-1]
            ax.plot(
                line[keep],
                grid_y[keep],
                "w--",
                lw=1.5,
                label=f"theory: {fit.law}, C = {fit.C:.3g} (fitted)",
            )
            ax.legend(fontsize=7, loc="upper left")
            notes.append(
                f"crossing ||mu|| ~ {fit.axis}^{fit.exponent:.3f} (fitted over "
                f"{fit.count} crossings); the theory's exponent {fit.theory:.3f}"
            )
    ax.set_xlabel("||mu|| (signal strength)")
    ax.set_ylabel("d (dimension)" if y == "d" else "n (training points)")
    draw.footnote(fig, notes)
    main = f"{value.replace('_', ' ')} over (||mu||, {y})"
    ax.set_title(draw.heading(main, title, rows, ("signal", y), axes=POOLABLE), fontsize=9)
    return draw.save(fig, path)


def signal_vs_noise(rows, path, title: str | None = None) -> str:
    """Signal learning max_{j,r} <w_{j,r}, j mu> against noise memorisation
    mean_i max_r |<w_{y_i,r}, xi_i>|, every run a point coloured by its test error."""
    ok = [r for r in rows if not stats.is_flagged(r)]
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    sc = ax.scatter(
        [r["noise_memorization"] for r in ok],
        [r["signal_learning"] for r in ok],
        c=[r["test_error"] for r in ok],
        cmap=draw.CMAP,
        s=4,
        vmin=0,
        vmax=0.5,
    )
    fig.colorbar(sc, ax=ax, label="test error")
    ax.set_xlabel("noise memorisation: mean_i max_r |<w_{y_i,r}, xi_i>|")
    ax.set_ylabel("signal learning: max_{j,r} <w_{j,r}, j mu>")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    draw.footnote(fig, [draw.flag_note(rows)])
    ax.set_title(
        "What the proofs track, at the end of training" + (f"\n{title}" if title else ""),
        fontsize=9,
    )
    return draw.save(fig, path)


def error_vs_signal(rows, path, protocol=None, title: str | None = None, lines: int = 5) -> str:
    """Mean test error (± s.e.m.) against ||mu|| at up to `lines` values of d (or n), the
    clean-label error dotted, and the Bayes error p of the noisy test labels."""
    y = _axis(rows)
    _, _, p = protocol_of(rows, protocol)
    values = sorted({r[y] for r in rows})
    if len(values) > lines:
        values = [values[i] for i in np.linspace(0, len(values) - 1, lines).round().astype(int)]
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for i, v in enumerate(values):
        mine = [r for r in rows if r[y] == v]
        for col, ls, lab in (("test_error", "-", f"{y} = {v}"), ("clean_test_error", ":", None)):
            agg = stats.aggregate(mine, by="signal", value=col)
            xs = np.array(list(agg))
            m = np.array([s.mean for s in agg.values()])
            e = np.array([s.sem for s in agg.values()])
            ax.plot(xs, m, ls, color=f"C{i}", label=lab)
            if col == "test_error":
                ax.fill_between(
                    xs, m - np.nan_to_num(e), m + np.nan_to_num(e), color=f"C{i}", alpha=0.2, lw=0
                )
    ax.axhline(p, color="k", ls="--", lw=1, label=f"Bayes error p = {p:g}")
    ax.set_xlabel("||mu||")
    ax.set_ylabel("test error (solid: noisy labels; dotted: clean)")
    ax.set_ylim(0, 0.55)
    ax.legend(fontsize=7)
    draw.footnote(fig, [draw.flag_note(rows), "shaded: ± 1 s.e.m. over trainings"])
    ax.set_title(
        draw.heading(
            "test error against the signal strength", title, rows, ("signal", y), axes=POOLABLE
        ),
        fontsize=9,
    )
    return draw.save(fig, path)


def figures(directory, config, out) -> list[str]:
    rows = draw.results(directory)
    experiment = config.get("experiment", {})
    protocol = experiment.get("protocol")
    title = draw.describe(experiment, Path(directory).name)
    out = Path(out)
    paths = []
    if len({r["signal"] for r in rows}) >= 2:
        paths.append(heatmap(rows, out / "test_error.png", "test_error", protocol, title))
        paths.append(
            heatmap(rows, out / "train_loss.png", "train_loss", protocol, title, boundary=False)
        )
    paths.append(signal_vs_noise(rows, out / "signal_vs_noise.png", title))
    if len({r["signal"] for r in rows}) >= 2:
        paths.append(error_vs_signal(rows, out / "error_vs_signal.png", protocol, title))
    return paths
