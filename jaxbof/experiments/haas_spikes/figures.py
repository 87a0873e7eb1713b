"""The pictures of the spiky-net experiment (NumPy and matplotlib only): RMSE against epochs
(Haas et al. 2023, Fig. 1c: mean and band over seeds), the predictions on the circle of one
seed with its training points, and the two activations. A `haas-spikes` suite root gets one
overview of its parts (kernel heatmap, networks, activations)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxbof import draw, store
from jaxbof.experiments.haas_spikes.grid import ACTIVATIONS, CIRCLE_POINTS

COLORS = {"relu": "C0", "spiky-smooth": "C1", "signal": "C2"}


def figures(directory, config, out) -> list[str]:
    """DIR/rmse.png and DIR/circle.png of a spiky-net directory; for a haas-spikes suite root,
    DIR/haas-spikes.png from its parts and the pictures of its kernel parts in their
    subdirectories (the runner draws an engine part's pictures, not a host part's)."""
    experiment = config.get("experiment") or {}
    out = Path(out)
    if "parts" in experiment:
        from jaxbof.experiments.haas_spikes import kernel_figures

        paths = overview(Path(directory), out / "haas-spikes.png")
        for sub in ("kernel", "tempered"):
            part = Path(directory) / sub
            if (part / store.CONFIG).exists():
                paths += kernel_figures.figures(part, store.load_config(part), out / sub)
        return paths
    rows = store.load_results(directory)
    protocol = experiment.get("protocol") or {}
    floor = math.sqrt(float(protocol.get("noise_var", 0.25)))
    title = draw.describe(experiment, Path(directory).name)
    paths = []
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    rmse_curves(fig.add_subplot(), rows, floor)
    fig.suptitle(title, fontsize=9)
    paths.append(draw.save(fig, out / "rmse.png"))
    fig = Figure(figsize=(6.5, 4.4), layout="constrained")
    if circle(fig.add_subplot(), rows):
        paths.append(draw.save(fig, out / "circle.png"))
    return paths


def rmse_curves(ax, rows, floor: float) -> None:
    """Train (solid) and test (dashed) RMSE against epochs, mean over seeds with a band of one
    standard deviation; the signal network's test RMSE at the last epoch as a marker."""
    for act in ACTIVATIONS:
        mine = [r for r in rows if r["activation"] == act and not r["diverged"]]
        if not mine:
            continue
        epochs = sorted({r["epoch"] for r in mine})
        for col, style in (("train_rmse", "-"), ("test_rmse", "--")):
            m, s = _band(mine, epochs, col)
            x = np.maximum(epochs, 0.5)  # epoch 0 on the log axis
            ax.plot(x, m, style, color=COLORS[act], label=f"{act} {col.split('_')[0]}")
            ax.fill_between(x, m - s, m + s, color=COLORS[act], alpha=0.15, lw=0)
        if act == "spiky-smooth":
            last = [r["signal_test_rmse"] for r in mine if r["final"]]
            if last:
                ax.errorbar(
                    [max(epochs)],
                    [np.mean(last)],
                    yerr=[np.std(last)],
                    fmt="o",
                    color=COLORS["signal"],
                    ms=4,
                    label="signal network test",
                )
    ax.axhline(floor, color="k", lw=0.8, ls=":", label=f"noise floor {floor:g}")
    seeds = len({r["seed"] for r in rows})
    ax.set_xscale("log")
    ax.set_xlabel("epoch (0 drawn at 0.5)")
    ax.set_ylabel("RMSE")
    ax.set_title(f"mean and one s.d. over {seeds} seeds", fontsize=9)
    ax.legend(fontsize=7, ncol=2)


def _band(rows, epochs, col):
    by = {e: [r[col] for r in rows if r["epoch"] == e] for e in epochs}
    return (np.array([np.mean(by[e]) for e in epochs]), np.array([np.std(by[e]) for e in epochs]))


def circle(ax, rows) -> bool:
    """The last-epoch predictions of the lowest seed that stored them, on the circle (angle),
    with its training points and the signal x_1 = cos(angle)."""
    stored = [r for r in rows if r["final"] and r["circle"]]
    if not stored:
        return False
    seed = min(r["seed"] for r in stored)
    angle = np.linspace(-math.pi, math.pi, CIRCLE_POINTS, endpoint=False)
    for r in sorted(
        (r for r in stored if r["seed"] == seed), key=lambda r: ACTIVATIONS.index(r["activation"])
    ):
        ax.plot(
            angle,
            _numbers(r["circle"]),
            color=COLORS[r["activation"]],
            lw=1,
            label=f"{r['activation']} (test RMSE {r['test_rmse']:.3f})",
        )
        if r["activation"] == "spiky-smooth":
            ax.plot(
                angle,
                _numbers(r["signal_circle"]),
                color=COLORS["signal"],
                lw=1.2,
                label=f"signal network (test RMSE {r['signal_test_rmse']:.3f})",
            )
        ta, ty = _numbers(r["train_angle"]), _numbers(r["train_y"])
    ax.plot(angle, np.cos(angle), "k--", lw=0.8, label="f*(x) = x_1")
    ax.plot(ta, ty, "kx", ms=6, label="training points")
    ax.set_xlabel("angle of x on the circle (radians)")
    ax.set_ylabel("prediction")
    ax.set_title(f"seed {seed}, last epoch ({CIRCLE_POINTS} angles)", fontsize=9)
    ax.legend(fontsize=7)
    return True


def _numbers(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()])


def activations(ax, frequency: float = 100.0) -> None:
    """relu and relu(z) + (sin(w z) + cos(w z)) / w on [-1, 1]."""
    z = np.linspace(-1, 1, 4001)
    ax.plot(z, np.maximum(z, 0), color=COLORS["relu"], label="relu")
    ax.plot(
        z,
        np.maximum(z, 0) + (np.sin(frequency * z) + np.cos(frequency * z)) / frequency,
        color=COLORS["spiky-smooth"],
        lw=0.7,
        label=f"relu + (sin({frequency:g}z) + cos({frequency:g}z))/{frequency:g}",
    )
    ax.set_xlabel("z")
    ax.set_title("the two activations", fontsize=9)
    ax.legend(fontsize=7)


def overview(root: Path, path: Path) -> list[str]:
    """The suite's story in one picture: the networks on the circle and their RMSE curves, the
    activations, and (when its part is there) the kernel heatmap's excess risks."""
    net = root / "net"
    if not (net / store.CONFIG).exists():
        return []
    rows = store.load_results(net)
    protocol = (store.load_config(net) or {}).get("experiment", {}).get("protocol") or {}
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    if not circle(axes[0], rows):
        axes[0].set_visible(False)
    rmse_curves(axes[1], rows, math.sqrt(float(protocol.get("noise_var", 0.25))))
    activations(axes[2], float(protocol.get("frequency", 100.0)))
    fig.suptitle(
        f"Haas et al. (2023): benign overfitting in fixed dimension ({root.name})", fontsize=10
    )
    return [draw.save(fig, path)]
