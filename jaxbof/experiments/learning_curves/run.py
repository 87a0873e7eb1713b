"""`jaxbof reproduce learning-curves [--quick]`: kernel ridge regression on the sphere and its
eigenlearning prediction, in float64, resumable, with the per-ridge agreement on stdout; then the
tempered-overfitting comparison (`krr.Tempered`): gradient flow on the kernel (float64, host)
into DIR/kernel-flow and the regression experiment's long run of the network (the engine, in
float32, or float64 with --x64) into DIR/network, drawn together in DIR/tempered.png."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxbof.experiments import host_side


def run(args, host) -> int:
    host_side(args, host, "learning-curves", x64=True)  # --x64: the network part
    from jaxbof import store
    from jaxbof.experiments.learning_curves import figures, krr

    runtime = host.runtime(args)
    config = krr.QUICK if args.quick else krr.Config()
    name = "learning-curves" + ("-quick" if args.quick else "")
    out = Path(args.out or f"runs/{name}")
    meta = {
        "experiment": {"kind": "learning-curves", "name": name, "config": config._asdict(),
                       "precision": "float64"},
        "run": host.meta(runtime),
    }
    writer = host.open_writer(out, meta, krr.SCHEMA, keys=krr.KEYS, flags={})
    done = {(r["n"], r["ridge_over_n"], r["seed"]) for r in store.load_results(out)}
    total = len(config.ns) * config.seeds
    print(f"{name}: up to {total} training sets ({len(done)} rows already in {out}), "
          f"float64, NumPy on the host", file=sys.stderr)
    rc = _write(writer, out, lambda on_rows: krr.run(config, on_rows=on_rows, skip=done))
    if rc:
        return rc
    rc = _tempered(args, host, runtime, out)
    if rc:
        return rc
    rows = store.load_results(out)
    for line in figures.table(rows):
        print(line)
    curves = figures.tempered_curves(out)
    if curves is not None:
        for line in figures.tempered_table(curves):
            print(line)
    if not args.no_plots:
        for path in figures.figures(out, store.load_config(out), out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _write(writer, out: Path, compute) -> int:
    """compute(on_rows) into `writer` (the results of `out`): 0, or 130 after an interrupt, which
    keeps every row written and says so."""
    from jaxbof import store

    with writer:
        try:
            compute(writer.write)
        except KeyboardInterrupt:
            print(f"jaxbof: interrupted; {len(store.load_results(out))} rows are saved in "
                  f"{out}/results.csv; rerun the same command to resume", file=sys.stderr)
            return 130
    return 0


def _tempered(args, host, runtime, out: Path) -> int:
    """The kernel flow's rows into out/kernel-flow, the network's into out/network (resumable
    both)."""
    from jaxbof import store
    from jaxbof.experiments import Study
    from jaxbof.experiments.learning_curves import krr
    from jaxbof.experiments.regression import program as R

    config = krr.TEMPERED_QUICK if args.quick else krr.Tempered()
    flow_dir = out / "kernel-flow"
    meta = {"experiment": {"kind": "learning-curves", "part": "kernel-flow",
                           "name": flow_dir.name, "config": config._asdict(),
                           "precision": "float64"},
            "run": host.meta(runtime)}
    writer = host.open_writer(flow_dir, meta, krr.FLOW_SCHEMA, keys=krr.FLOW_KEYS, flags={})
    done = {(r["n"], r["t"], r["seed"]) for r in store.load_results(flow_dir)}
    print(f"learning-curves: kernel flow at n = {config.n}, {config.kernel_seeds} training sets, "
          f"into {flow_dir}", file=sys.stderr)
    rc = _write(writer, flow_dir,
                lambda on_rows: krr.run_flow(config, on_rows=on_rows, skip=done))
    if rc:
        return rc
    cells = R.cells(n=config.n, d=config.d, width=config.widths, seeds=config.seeds,
                    target=R.canonical_target(config.target), noise=config.noise)
    protocol = R.Protocol(t_max=config.t_max, times=config.times, n_test=config.n_test)
    grid = dict(n=config.n, d=config.d, width=list(config.widths), seeds=config.seeds,
                target=R.canonical_target(config.target), noise=config.noise)
    study = Study("regression", "learning-curves-network", "the regression experiment's long "
                  "run, beside the kernel flow", grid, protocol, tuple(cells))
    print(f"learning-curves: the network at n = {config.n}, widths {list(config.widths)}, "
          f"t up to {config.t_max:g}, into {out / 'network'}", file=sys.stderr)
    return host.run(study, argparse.Namespace(**{**vars(args), "out": str(out / "network")}),
                    runtime, tables=False)
