"""The pictures of spiky-smooth kernel regression (Haas et al. 2023), JAX-free (NumPy and
matplotlib, imported inside the functions, Agg).

A heatmap directory: the measured excess risk over (gamma_spike, rho), the mean over seeds,
annotated, beside its eigenlearning twin, with a bottom row for kernel ridge regression with the
smooth kernel and ridge rho (the ridge limit); cells predicted in the ridge limit are marked
"(r)" (DIR/spiky_heatmap.png, as the published appendix figure). A tempered directory: the
excess risk against n (log-log: measured points with 1 s.e. bars, predicted lines) and the
noise amplification E_0 - 1 against n with eigenlearning's and Mallinar et al.'s (2022)
prediction (DIR/spiky_tempered.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["figures", "heatmap", "tempered"]

FLAGS = {"converged": False}


def _save(fig, path) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=130)
    return str(path)


def _grid(rows):
    """(gammas, rhos, measured mean, s.e., predicted, ridge-limit mask) of the spiky-smooth
    cells, and the smooth-ridge row (mean, s.e., predicted) per rho; nan where missing."""
    from jaxbof import stats

    spiky = [r for r in rows if r["kernel"] == "spiky-smooth"]
    gammas = sorted({r["gamma_spike"] for r in spiky})
    rhos = sorted(
        {r["rho"] for r in rows if r["kernel"] in ("spiky-smooth", "smooth-ridge")}, reverse=True
    )
    shape = (len(gammas) + 1, len(rhos))
    mean, sem, pred = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    limit = np.zeros(shape, bool)
    agg = stats.aggregate(rows, ("kernel", "gamma_spike", "rho"), "excess_risk", FLAGS)
    first = {(r["kernel"], r["gamma_spike"], r["rho"]): r for r in rows}
    for (kernel, g, rho), s in agg.items():
        if kernel == "spiky-smooth":
            i = gammas.index(g)
        elif kernel == "smooth-ridge":
            i = len(gammas)
        else:
            continue
        j = rhos.index(rho)
        p = first[(kernel, g, rho)]
        mean[i, j], sem[i, j], pred[i, j] = s.mean, s.sem, p["predicted_excess_risk"]
        limit[i, j] = p["prediction"] == "ridge-limit"
    return gammas, rhos, mean, sem, pred, limit


def heatmap(rows, path, title: str = "") -> str:
    """Measured and predicted excess risk over (gamma_spike, rho), side by side."""
    from matplotlib.figure import Figure

    gammas, rhos, mean, sem, pred, limit = _grid(rows)
    fig = Figure(figsize=(12, 0.55 * len(gammas) + 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    both = np.concatenate([mean[np.isfinite(mean)], pred[np.isfinite(pred)]])
    vmin, vmax = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    labels = [f"{g:g}" for g in gammas] + ["KRR, ridge rho"]
    for ax, values, name in (
        (axes[0], mean, "measured (mean over seeds, +- s.e.)"),
        (axes[1], pred, "eigenlearning prediction ((r): ridge limit)"),
    ):
        im = ax.imshow(values, cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not np.isfinite(values[i, j]):
                    continue
                text = f"{values[i, j]:.3f}"
                if values is mean and np.isfinite(sem[i, j]):
                    text += f"\n+-{sem[i, j]:.3f}"
                if values is pred and limit[i, j]:
                    text += " (r)"
                dark = values[i, j] > (vmin + vmax) / 2
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                )
        ax.axhline(len(gammas) - 0.5, color="w", lw=2)
        ax.set_xticks(range(len(rhos)), [f"{r:g}" for r in rhos])
        ax.set_yticks(range(len(labels)), labels)
        ax.set(xlabel="spike weight rho (quasi-regularisation)", ylabel="spike bandwidth gamma")
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, label="excess risk ||f - f*||^2")
    fig.suptitle(
        "Ridgeless spiky-smooth kernel regression on S^2 (Haas et al. 2023)"
        + (f"\n{title}" if title else ""),
        fontsize=10,
    )
    return _save(fig, path)


def _series(rows, value):
    """{kernel: (n, mean, sem, first row per n)} of `value`."""
    from jaxbof import stats

    out: dict = {}
    first = {(r["kernel"], r["n"]): r for r in rows}
    for (kernel, n), s in stats.aggregate(rows, ("kernel", "n"), value, FLAGS).items():
        out.setdefault(kernel, []).append((n, s.mean, s.sem, first[(kernel, n)]))
    return {
        k: (
            np.array([p[0] for p in v], float),
            np.array([p[1] for p in v]),
            np.nan_to_num(np.array([p[2] for p in v])),
            [p[3] for p in v],
        )
        for k, v in out.items()
    }


def tempered(rows, path, title: str = "") -> str:
    """Excess risk and noise amplification against n, measured and predicted, per kernel."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.3), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    for i, (kernel, (n, m, e, first)) in enumerate(sorted(_series(rows, "excess_risk").items())):
        ax.errorbar(n, m, yerr=e, fmt="o", ms=4, color=f"C{i}", label=f"{kernel}: measured")
        ax.plot(
            n,
            [r["predicted_excess_risk"] for r in first],
            "--",
            color=f"C{i}",
            lw=1.2,
            label=f"{kernel}: eigenlearning",
        )
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="excess risk ||f - f*||^2")
    ax.legend(fontsize=7)
    for i, (kernel, (n, m, e, first)) in enumerate(
        sorted(_series(rows, "noise_amplification").items())
    ):
        bx.errorbar(n, m, yerr=e, fmt="o", ms=4, color=f"C{i}", label=f"{kernel}: measured")
        bx.plot(
            n,
            [r["predicted_e0_minus_1"] for r in first],
            "--",
            color=f"C{i}",
            lw=1.2,
            label=f"{kernel}: eigenlearning E_0 - 1",
        )
        mallinar = np.array([r["mallinar_e0_minus_1"] for r in first], float)
        if np.isfinite(mallinar).any():
            bx.plot(n, mallinar, ":", color=f"C{i}", lw=1.2, label=f"{kernel}: Mallinar alpha - 1")
    bx.axhline(0.0, color="k", lw=0.6)
    bx.set(xscale="log", xlabel="n", ylabel="noise amplification E_0 - 1")
    bx.set_title("(excess risk - clean-label excess risk) / noise variance", fontsize=8)
    bx.legend(fontsize=7)
    fig.suptitle(
        "Tempered against benign: ridgeless kernels on S^2, error bars 1 s.e."
        + (f"\n{title}" if title else ""),
        fontsize=10,
    )
    return _save(fig, path)


def figures(directory, config, out) -> list[str]:
    """The pictures of a spiky-kernel results directory into `out` (see the module)."""
    from jaxbof import store

    rows = store.load_results(directory)
    if not rows:
        raise ValueError(f"no results in {Path(directory) / store.RESULTS}")
    experiment = (config or {}).get("experiment", {})
    study = experiment.get("config", {}).get("study")
    if study is None:
        study = "tempered" if "excess_risk_clean" in rows[0] else "heatmap"
    title = str(experiment.get("name") or Path(directory).name)
    out = Path(out)
    if study == "tempered":
        return [tempered(rows, out / "spiky_tempered.png", title)]
    return [heatmap(rows, out / "spiky_heatmap.png", title)]
