"""`jaxbof reproduce optimizers`: every part of the study into DIR/<part>, then the comparison
(table on stdout, DIR/optimizers.png) once every part is complete."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxbof.experiments import Study


def run(args, host) -> int:
    from jaxbof import engine as eng
    from jaxbof import experiments, store
    from jaxbof.experiments.optimizers import figures
    from jaxbof.experiments.optimizers import study as O

    if args.optimizer is not None:
        raise host.error("--optimizer does not apply to reproduce optimizers")
    quick = bool(args.quick)
    root = Path(args.out or "runs/optimizers" + ("-quick" if quick else ""))
    runtime = host.runtime(args)
    try:
        O.write_root_config(root, {**O.config(quick), "run": host.meta(runtime)})
    except ValueError as e:
        raise host.error(str(e)) from None
    except OSError as e:
        raise host.error(f"--out {str(root)!r}: cannot write there ({e.strerror or e})") from None
    complete = True
    for part in O.parts(quick):
        study = Study(part.kind, part.name, part.description, part.grid, part.protocol,
                      part.cells)
        sub = argparse.Namespace(**{**vars(args), "out": str(root / part.subdir)})
        print(f"optimizers: {part.subdir}", file=sys.stderr)
        rc = host.run(study, sub, runtime, tables=False)
        if rc:
            return rc
        exp = experiments.plugin(part.kind).experiment(study.protocol, study.cells)
        done = eng.resume(exp, store.load_results(root / part.subdir)).done
        complete &= all(c in done for c in part.cells)
    if not complete:
        print("optimizers: parts of other processes are still running; the last process "
              "draws the comparison", file=sys.stderr)
        return 0
    for line in figures.optimizer_table(root):
        print(line)
    if not args.no_plots:
        with store.exclusive(root, "plots"):
            for path in figures.figures(root, store.load_config(root), root):
                print(f"wrote {path}", file=sys.stderr)
    return 0
