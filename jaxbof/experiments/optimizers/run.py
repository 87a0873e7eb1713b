"""`jaxbof reproduce optimizers`: every part of the study into DIR/<part>, then the comparison
(table on stdout, DIR/optimizers.png) once every part is complete: one `Suite`, run and resumed
by jaxbof.runner."""

from __future__ import annotations

from jaxbof.contract import Study, Suite


def study(quick: bool) -> Suite:
    from jaxbof.experiments.optimizers import figures
    from jaxbof.experiments.optimizers import study as O

    parts = tuple(
        (p.subdir, Study(p.kind, p.name, p.description, p.grid, p.protocol, p.cells))
        for p in O.parts(quick)
    )
    return Suite(
        "optimizers",
        "optimizers" + ("-quick" if quick else ""),
        parts,
        table=figures.optimizer_table,
        write_root=lambda root, run: O.write_root_config(root, {**O.config(quick), "run": run}),
    )
