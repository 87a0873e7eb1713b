"""Haas et al. on the command line: the flags of `jaxbof sweep spiky-net`, its table, and
`jaxbof reproduce haas-spikes [--quick]`: the kernel heatmap, the tempered-against-benign study
in n and the networks, three parts of one Suite (JAX-free)."""

from __future__ import annotations

import math

from jaxbof import stats
from jaxbof.contract import Study, Suite
from jaxbof.experiments.haas_spikes.grid import ACTIVATIONS, PUBLISHED, QUICK, Cell, Protocol
from jaxbof.flags import number

NET_DESCRIPTION = (
    "Haas et al. (2023), Fig. 1c: two-layer nets of width 2 x 10,000 by SGD "
    "(batch size 1) on 15 noisy points of the circle, ReLU against spiky-smooth"
)
REPRODUCE_HELP = (
    "Haas et al. (2023): the spiky-smooth kernel heatmap (float64), tempered "
    "against benign in n, and the networks of Fig. 1c (100 seeds, float32)"
)


def add_arguments(s) -> None:
    p = PUBLISHED
    s.add_argument("--n", default=str(p.n), help="training points on the circle")
    s.add_argument("--width", default=str(p.width), help="neurons of each of the two copies")
    s.add_argument("--lr", default=str(p.lr), help="SGD step on (y - f)^2")
    s.add_argument("--epochs", default=str(p.epochs), help="passes over the data")
    s.add_argument(
        "--activation",
        default=",".join(ACTIVATIONS),
        help=f"comma list of {', '.join(ACTIVATIONS)}",
    )
    s.add_argument(
        "--frequency", default=f"{p.frequency:g}", help="w of relu(z) + (sin(w z) + cos(w z)) / w"
    )
    s.add_argument("--noise-var", default=str(p.noise_var), help="label noise variance")
    s.add_argument("--seeds", default="100", help="seeds (each: data, init and SGD order)")
    s.add_argument("--seed", default="0", help="base seed of the whole sweep")
    s.add_argument("--n-test", default=str(p.n_test), help="test points at the last epoch")
    s.add_argument(
        "--n-curve", default=str(p.n_curve), help="test points at the other recorded epochs"
    )
    s.add_argument("--records", default=str(p.records), help="recorded epochs (log-spaced)")


def from_args(args) -> Study:
    acts = tuple(dict.fromkeys(a.strip() for a in args.activation.split(",")))
    for a in acts:
        if a not in ACTIVATIONS:
            raise ValueError(f"--activation: {a!r} is not one of {', '.join(ACTIVATIONS)}")
    seeds = number(args.seeds, int, "seeds")
    if seeds < 1:
        raise ValueError(f"--seeds: {seeds} must be >= 1")
    protocol = Protocol(
        n=number(args.n, int, "n"),
        width=number(args.width, int, "width"),
        lr=number(args.lr, float, "lr"),
        epochs=number(args.epochs, int, "epochs"),
        frequency=number(args.frequency, float, "frequency"),
        noise_var=number(args.noise_var, float, "noise-var"),
        n_test=number(args.n_test, int, "n-test"),
        n_curve=number(args.n_curve, int, "n-curve"),
        records=number(args.records, int, "records"),
        seed=number(args.seed, int, "seed"),
    )
    try:
        protocol.check()
    except ValueError as e:  # "width: 0 must be ...": the flag of that field
        raise ValueError(f"--{e}") from None
    grid = dict(seeds=seeds, activation=list(acts))
    return Study(
        "spiky-net",
        "spiky-net-sweep",
        NET_DESCRIPTION,
        grid,
        protocol,
        tuple(Cell(s, a) for s in range(seeds) for a in acts),
    )


def net_study(quick: bool, name: str) -> Study:
    """The networks of the preset: the published protocol with 100 seeds (quick: QUICK with
    8 seeds)."""
    protocol, seeds = (QUICK, 8) if quick else (PUBLISHED, 100)
    return Study(
        "spiky-net",
        name,
        NET_DESCRIPTION,
        dict(seeds=seeds, activation=list(ACTIVATIONS)),
        protocol,
        tuple(Cell(s, a) for s in range(seeds) for a in ACTIVATIONS),
    )


def table(rows, config=None) -> list[str]:
    """Train, test and signal-network RMSE at the last epoch: mean and s.e. over seeds per
    activation (diverged runs left out and counted), then the paired test-RMSE difference."""
    last = [r for r in rows if r["final"]]
    lines = [
        "activation,epoch,train_rmse,train_rmse_sem,test_rmse,test_rmse_sem,"
        "signal_test_rmse,signal_test_rmse_sem,runs,diverged"
    ]
    for act in ACTIVATIONS:
        g = [r for r in last if r["activation"] == act]
        ok = [r for r in g if not r["diverged"]]
        if not g:
            continue
        cols = []
        for c in ("train_rmse", "test_rmse", "signal_test_rmse"):
            vals = [r[c] for r in ok if not math.isnan(r[c])]
            m, s = stats.mean_sem(vals) if vals else (math.nan, math.nan)
            cols.append(f"{m:.4f},{s:.2g}")
        lines.append(
            f"{act},{max(r['epoch'] for r in g)},{','.join(cols)},{len(ok)},{len(g) - len(ok)}"
        )
    by = {(r["seed"], r["activation"]): r["test_rmse"] for r in last if not r["diverged"]}
    diffs = [
        by[(s, "relu")] - by[(s, "spiky-smooth")]
        for s, a in by
        if a == "relu" and (s, "spiky-smooth") in by
    ]
    if len(diffs) >= 2:
        iv = stats.t_interval(diffs)
        lines.append(
            f"paired test RMSE, relu - spiky-smooth: {iv.value:.4f} "
            f"[{iv.low:.4f}, {iv.high:.4f}] over {len(diffs)} seeds"
        )
    return lines


def haas_study(quick: bool) -> Suite:
    """`jaxbof reproduce haas-spikes [--quick]`: DIR/kernel (the heatmap), DIR/tempered
    (tempered against benign in n) and DIR/net (the networks)."""
    from jaxbof.experiments.haas_spikes import kernels

    name = "haas-spikes" + ("-quick" if quick else "")
    heat = kernels.HEATMAP_QUICK if quick else kernels.Heatmap()
    temp = kernels.TEMPERED_QUICK if quick else kernels.Tempered()
    parts = (
        ("kernel", kernels.heatmap_study(heat, name + "-kernel", part="kernel")),
        ("tempered", kernels.tempered_study(temp, name + "-tempered", part="tempered")),
        ("net", net_study(quick, name + "-net")),
    )
    return Suite("spiky-net", name, parts, table=suite_table, write_root=_write_root(name))


def suite_table(root) -> list[str]:
    """The three parts' tables, one after the other."""
    from pathlib import Path

    from jaxbof import store
    from jaxbof.experiments.haas_spikes import kernels

    lines = []
    for sub, fn in (("kernel", kernels.table), ("tempered", kernels.table), ("net", table)):
        where = Path(root) / sub
        lines += [f"# {sub}"] + list(fn(store.load_results(where), store.load_config(where)))
    return lines


def _write_root(name: str):
    """ROOT/config.json naming the suite (kind spiky-net, no rows of its own)."""

    def write(root, run):
        from jaxbof import store

        store.write_config(
            root,
            {
                "experiment": {
                    "kind": "spiky-net",
                    "name": name,
                    "parts": ["kernel", "tempered", "net"],
                },
                "run": run,
            },
        )

    return write
