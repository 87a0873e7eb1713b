"""`jaxbof reproduce learning-curves [--quick]`: kernel ridge regression on the sphere and its
eigenlearning prediction, in float64, resumable, with the per-ridge agreement on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from jaxbof.experiments import host_side


def run(args, host) -> int:
    host_side(args, host, "learning-curves")
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
    with writer:
        try:
            krr.run(config, on_rows=writer.write, skip=done)
        except KeyboardInterrupt:
            print(f"jaxbof: interrupted; {len(store.load_results(out))} rows are saved in "
                  f"{out}/results.csv; rerun the same command to resume", file=sys.stderr)
            return 130
    rows = store.load_results(out)
    for line in figures.table(rows):
        print(line)
    if not args.no_plots:
        for path in figures.figures(out, store.load_config(out), out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
