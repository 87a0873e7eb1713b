"""A theorem from outside jaxbof, as small as one can be: gradient descent on 1-D least squares,

    L(w) = (1/2n) sum_i (w x_i - y_i)^2,   x_i ~ N(0, 1),  y_i = 2 x_i + 0.1 eps_i,

started at w_0 = 0, has the closed form w_t = w* (1 - (1 - lr s)^t) with s = mean(x^2) and
w* = mean(x y) / s. The package registers itself under the entry-point group
"jaxbof.experiments" (pyproject.toml), so that `jaxbof sweep toy-linear` and `jaxbof plot` run
it with nothing in jaxbof edited. This module imports no JAX: the device code is in
program.py, loaded when a sweep runs.
"""

from jaxbof.experiments import Plugin, Study
from jaxbof.flags import number, parse_values


def add_arguments(group) -> None:
    group.add_argument("--n", default="8,16", help="training points")
    group.add_argument("--lr", default="0.1,0.5", help="step sizes")
    group.add_argument("--seeds", default="2")
    group.add_argument("--steps", default="40", help="steps per run")
    group.add_argument("--record", default="10", help="a row every this many steps")


def from_args(args) -> Study:
    from jaxbof_toy.program import Cell, Protocol

    ns, lrs = parse_values(args.n, int, "n"), parse_values(args.lr, float, "lr")
    seeds = number(args.seeds, int, "seeds")
    if min(ns) < 1 or seeds < 1 or min(lrs) <= 0:
        raise ValueError("--n, --seeds and --lr must be positive")
    protocol = Protocol(steps=number(args.steps, int, "steps"),
                        record=number(args.record, int, "record"))
    cells = tuple(Cell(n, lr, s) for n in ns for lr in lrs for s in range(seeds))
    return Study("toy-linear", "toy-linear", "1-D least squares by GD",
                 {"n": ns, "lr": lrs, "seeds": seeds}, protocol, cells)


def experiment(protocol, cells):
    from jaxbof_toy.program import experiment as build

    return build(protocol, cells)


def table(rows, config=None) -> list[str]:
    last = [r for r in rows if r["final"]]
    return ["n,lr,seed,w,w_closed_form"] + [
        f"{r['n']},{r['lr']:g},{r['seed']},{r['w']:.6f},{r['w_exact']:.6f}" for r in last]


def figures(directory, config, out) -> list[str]:
    from pathlib import Path

    from matplotlib.figure import Figure

    from jaxbof import draw, store

    rows = store.load_results(directory)
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for i, key in enumerate(sorted({(r["n"], r["lr"], r["seed"]) for r in rows})):
        mine = sorted((r for r in rows if (r["n"], r["lr"], r["seed"]) == key),
                      key=lambda r: r["step"])
        ax.plot([r["step"] for r in mine], [r["w"] for r in mine], "o", color=f"C{i % 10}")
        ax.plot([r["step"] for r in mine], [r["w_exact"] for r in mine], "-", color=f"C{i % 10}")
    ax.set_xlabel("step")
    ax.set_ylabel("w (points: trained; lines: closed form)")
    return [draw.save(fig, Path(out) / "toy.png")]


PLUGIN = Plugin(name="toy-linear", description="1-D least squares by gradient descent",
                paper="closed form", add_arguments=add_arguments, from_args=from_args,
                experiment=experiment, table=table, figures=figures)
