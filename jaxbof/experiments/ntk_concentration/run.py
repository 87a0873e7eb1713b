"""`jaxbof reproduce ntk-concentration`: ||H_M - H_inf||_op / ||H_inf||_op against width M
(jaxbof.concentration), in float64, resumable, with the fitted slopes on stdout."""

from __future__ import annotations

import sys
from pathlib import Path

from jaxbof.experiments import host_side


def run(args, host) -> int:
    import jax

    host_side(args, host, "ntk-concentration")
    jax.config.update("jax_enable_x64", True)  # operator norms of kernel differences: float64
    from jaxbof import concentration, store
    from jaxbof.experiments.ntk_concentration import figures

    runtime = host.runtime(args)
    config = concentration.QUICK if args.quick else concentration.Config()
    name = "ntk-concentration" + ("-quick" if args.quick else "")
    out = Path(args.out or f"runs/{name}")
    meta = {
        "experiment": {"kind": "ntk-concentration", "name": name, "config": config._asdict(),
                       "precision": "float64"},
        "run": host.meta(runtime),
    }
    writer = host.open_writer(out, meta, concentration.SCHEMA)
    done = {(r["n"], r["d"], r["width"], r["seed"]) for r in store.load_results(out)}
    total = len(config.nd) * len(config.widths) * config.seeds
    print(f"{name}: {total - len(done)} Grams to compute ({len(done)} already in {out}), "
          f"float64 on {jax.default_backend()}", file=sys.stderr)
    with writer:
        try:
            concentration.run(config, on_row=lambda row: writer.write([row]), skip=done)
        except KeyboardInterrupt:
            print(f"jaxbof: interrupted; {len(store.load_results(out))} rows are saved in "
                  f"{out}/results.csv; rerun the same command to resume", file=sys.stderr)
            return 130
    rows = store.load_results(out)
    print("n,d,slope,prefactor,widths")
    for fit in concentration.fit_slopes(rows):
        print(f"{fit.n},{fit.d},{fit.slope:.4f},{fit.prefactor:.4g},{fit.widths}")
    if not args.no_plots:
        for path in figures.figures(out, store.load_config(out), out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
