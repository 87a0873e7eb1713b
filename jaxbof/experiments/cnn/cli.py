"""The CNN experiment on the command line: `jaxbof sweep cnn` flags, the published presets
(kou-cnn, cao-cnn) and the terminal summary."""

from __future__ import annotations

from jaxbof.experiments import Study
from jaxbof.experiments.cnn import cells as C
from jaxbof.experiments.cnn.boundary import crossings, fit_boundary
from jaxbof.flags import choice, number, parse_values

PAPER = "Kou et al., ICML 2023; Cao et al., NeurIPS 2022"


def add_arguments(s) -> None:
    s.add_argument("--n", default="20", help="training points: values or ranges")
    s.add_argument("--d", default="100:1090:10", help="dimension of each patch")
    s.add_argument("--signal", default="0:9.9:0.1", help="||mu||: values or ranges")
    s.add_argument("--seeds", default="10", help="trainings per cell")
    s.add_argument("--seed", default="0", help="base seed of the whole sweep")
    s.add_argument("--filters", default="10", help="m, filters per sign")
    s.add_argument("--sigma-p", default="1", help="noise patch standard deviation")
    s.add_argument("--sigma-0", default="0.01", help="init std (paper variant only)")
    s.add_argument("--noise-rate", default="0.1", help="p, label-flip rate")
    s.add_argument("--activation", default="relu", help="relu or relu^q with q > 2")
    s.add_argument("--variant", default="published-code", help="published-code or paper")
    s.add_argument("--lr", default="0.1", help="GD step size")
    s.add_argument("--steps", default="100", help="GD steps")
    s.add_argument("--n-test", default="1000", help="Monte Carlo test points per model")


def from_args(args) -> Study:
    grid = dict(
        n=parse_values(args.n, int, "n"),
        d=parse_values(args.d, int, "d"),
        signal=parse_values(args.signal, float, "signal"),
        seeds=number(args.seeds, int, "seeds"),
    )
    protocol = C.Protocol(
        signals=grid["signal"],
        filters=number(args.filters, int, "filters"),
        sigma_p=number(args.sigma_p, float, "sigma-p"),
        sigma_0=number(args.sigma_0, float, "sigma-0"),
        noise_rate=number(args.noise_rate, float, "noise-rate"),
        q=C.activation_q(args.activation),
        variant=choice(args.variant, C.VARIANTS, "variant"),
        lr=number(args.lr, float, "lr"),
        steps=number(args.steps, int, "steps"),
        n_test=number(args.n_test, int, "n-test"),
        seed=number(args.seed, int, "seed"),
    )
    cells = C.cells(grid["n"], grid["d"], grid["seeds"])
    return Study("cnn", "cnn-sweep", "custom CNN signal-noise grid", grid, protocol, tuple(cells))


def _inclusive(start, stop, step):
    count = round((stop - start) / step)
    return tuple(round(start + i * step, 12) for i in range(count + 1))


def kou_study(quick: bool) -> Study:
    """The published grid of syntheticrelu.py: n = 20, d in {100, 110, ..., 1090}, ||mu|| in
    {0, 0.1, ..., 9.9}, 10 trainings per cell, m = 10, sigma_p = 1, p = 0.1, lr 0.1, 100 steps,
    1000 test points; quick: every 100 in d, every 0.5 in ||mu||, 3 trainings."""
    if quick:
        grid = dict(n=(20,), d=_inclusive(100, 1000, 100), signal=_inclusive(0, 9.5, 0.5), seeds=3)
    else:
        grid = dict(n=(20,), d=_inclusive(100, 1090, 10), signal=_inclusive(0, 9.9, 0.1), seeds=10)
    name = "kou-cnn" + ("-quick" if quick else "")
    return Study(
        "cnn",
        name,
        "Kou et al. (ICML 2023), published code's grid: test error over (||mu||, d)",
        grid,
        C.Protocol(signals=grid["signal"]),
        tuple(C.cells(grid["n"], grid["d"], grid["seeds"])),
    )


def cao_study(quick: bool) -> Study:
    """Cao et al.'s ReLU^3 CNN without label noise (paper variant), d = 400, over n and
    ||mu||: the boundary n SNR^3 = const, SNR = ||mu|| / (sigma_p sqrt(d)), crosses the grid."""
    n = (10, 20, 40, 80) if quick else (10, 14, 20, 28, 40, 56, 80, 113, 160)
    signal = _inclusive(1, 15, 1) if quick else _inclusive(0.5, 15, 0.5)
    grid = dict(n=n, d=(400,), signal=signal, seeds=3 if quick else 10)
    protocol = C.Protocol(
        signals=signal, q=3.0, variant="paper", noise_rate=0.0, sigma_0=0.05, lr=0.5, steps=400
    )
    name = "cao-cnn" + ("-quick" if quick else "")
    return Study(
        "cnn",
        name,
        "Cao et al. (NeurIPS 2022): ReLU^3 CNN, no label noise, test error over (||mu||, n)",
        grid,
        protocol,
        tuple(C.cells(grid["n"], grid["d"], grid["seeds"])),
    )


def table(rows, config=None) -> list[str]:
    """Per (n, d): where the mean test error first falls to the level, and the constant C of
    the theory's boundary it implies; then the fitted C and scaling exponent."""
    if not rows:
        return []
    protocol = ((config or {}).get("experiment") or {}).get("protocol")
    fit = fit_boundary(rows, protocol=protocol)
    lines = [f"n,d,crossing_signal_at_{fit.level:.3g},C"]
    for cr in crossings(rows, fit.level, protocol):
        lines.append(f"{cr.n},{cr.d},{cr.signal:.4g},{fit.constant_of(cr):.4g}")
    lines.append(
        f"# boundary {fit.law}: C = {fit.C:.4g} (median over {fit.count} crossings); "
        f"fitted exponent {fit.exponent:.3f} against the theory's {fit.theory:.3f}"
    )
    return lines


def experiment(protocol, cells):
    from jaxbof.experiments.cnn.program import experiment as build

    return build(protocol, cells)


def engine():
    from jaxbof.experiments.cnn.program import default_engine

    return default_engine()
