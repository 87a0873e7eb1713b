"""The classification experiment on the command line: its `jaxbof sweep classification` flags,
the study they ask for, the published presets, and the terminal table."""

from __future__ import annotations

from jaxbof import stats
from jaxbof.experiments import Study
from jaxbof.flags import enum_choice, number, parse_values


def add_arguments(s) -> None:
    s.add_argument("--n", default="50:150:10", help="training points: values or ranges")
    s.add_argument("--d-over-n", default="1:10")
    s.add_argument("--gamma", default="5/n", help="values, ranges or c/n (gamma = c / n)")
    s.add_argument("--alpha", default="0.1")
    s.add_argument("--noise-rate", default="0.1")
    s.add_argument("--width", default="64")
    s.add_argument("--seeds", default="5", help="seeds per cell")
    s.add_argument("--seed", default="0", help="base seed of the whole sweep")
    s.add_argument("--n-test", default="1000", help="Monte Carlo test points per model")
    s.add_argument("--stop", default="zero_error", help="zero_error or zero_loss")
    s.add_argument("--corruption", default="bernoulli", help="bernoulli or exact")
    s.add_argument("--outer", default="alternating", help="alternating or all_negative")
    s.add_argument("--signal", default="e1", help="e1 or random")
    s.add_argument("--max-steps", default="200000")
    s.add_argument("--init-scale", default="1", help="init std = init_scale / (M sqrt d)")
    s.add_argument("--lr-scale", default="1", help="step size = lr_scale / (M n)")


def from_args(args) -> Study:
    from jaxbof.experiments.classification.data import Corruption, Signal
    from jaxbof.experiments.classification.grid import Grid, Protocol
    from jaxbof.experiments.classification.step import Stop
    from jaxbof.model import Outer

    grid = Grid(
        n=parse_values(args.n, int, "n"),
        d_over_n=parse_values(args.d_over_n, float, "d-over-n"),
        gamma=parse_values(args.gamma, float, "gamma", allow_per_n=True),
        alpha=parse_values(args.alpha, float, "alpha"),
        noise_rate=parse_values(args.noise_rate, float, "noise-rate"),
        width=parse_values(args.width, int, "width"),
        seeds=number(args.seeds, int, "seeds"),
    )
    protocol = Protocol(
        corruption=enum_choice(Corruption, args.corruption, "corruption"),
        outer=enum_choice(Outer, args.outer, "outer"),
        signal=enum_choice(Signal, args.signal, "signal"),
        stop=enum_choice(Stop, args.stop, "stop"),
        init_scale=number(args.init_scale, float, "init-scale"),
        lr_scale=number(args.lr_scale, float, "lr-scale"),
        max_steps=number(args.max_steps, int, "max-steps"),
        n_test=number(args.n_test, int, "n-test"),
        seed=number(args.seed, int, "seed"),
    )
    return Study(
        "classification",
        "classification-sweep",
        "custom classification grid",
        grid,
        protocol,
        tuple(grid.cells()),
    )


def preset_study(name: str):
    """`quick -> Study` of a published preset (presets.PRESETS)."""

    def study(quick: bool) -> Study:
        from jaxbof.experiments.classification.presets import preset

        p = preset(name, quick)
        return Study(
            "classification", p.name, p.description, p.grid, p.protocol, tuple(p.grid.cells())
        )

    return study


def table(rows, config=None) -> list[str]:
    """Mean test error per (n, d/n, gamma) over valid runs, with its s.e.m. and counts."""
    agg = stats.aggregate(rows, by=("n", "d_over_n", "gamma"), value="test_error")
    lines = ["n,d_over_n,gamma,mean_test_error,sem,count,flagged"]
    for (n, r, g), s in agg.items():
        lines.append(f"{n},{r:g},{g:.6g},{s.mean:.4f},{s.sem:.4f},{s.count},{s.flagged}")
    return lines


def experiment(protocol, cells):
    from jaxbof.experiments.classification.program import experiment as build

    return build(protocol, cells=cells)
