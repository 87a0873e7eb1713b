"""`jaxbof reproduce learning-curves [--quick]`: kernel ridge regression on the sphere and its
eigenlearning prediction, in float64, with the per-ridge agreement on stdout; then the
tempered-overfitting comparison (`krr.Tempered`): gradient flow on the kernel (float64, host)
into DIR/kernel-flow and the regression experiment's long run of the network (the engine, in
float32, or float64 with --x64) into DIR/network, drawn together in DIR/tempered.png. One
`Suite` of three studies, run and resumed by jaxbof.runner."""

from __future__ import annotations

from jaxbof.contract import HostStudy, Schema, Study, Suite


def study(quick: bool) -> Suite:
    from jaxbof.experiments.learning_curves import krr
    from jaxbof.experiments.regression import program as R

    config = krr.QUICK if quick else krr.Config()
    name = "learning-curves" + ("-quick" if quick else "")

    def curves(on_rows, stored):
        done = {(r["n"], r["ridge_over_n"], r["seed"]) for r in stored}
        krr.run(config, on_rows=on_rows, skip=done)

    grid = HostStudy(
        "learning-curves",
        name,
        f"up to {len(config.ns) * config.seeds} training sets, NumPy",
        config._asdict(),
        Schema(krr.SCHEMA, krr.KEYS, flags={}),
        curves,
    )
    tempered = krr.TEMPERED_QUICK if quick else krr.Tempered()

    def flow(on_rows, stored):
        done = {(r["n"], r["t"], r["seed"]) for r in stored}
        krr.run_flow(tempered, on_rows=on_rows, skip=done)

    kernel_flow = HostStudy(
        "learning-curves",
        "kernel-flow",
        f"kernel flow at n = {tempered.n}, {tempered.kernel_seeds} training sets",
        tempered._asdict(),
        Schema(krr.FLOW_SCHEMA, krr.FLOW_KEYS, flags={}),
        flow,
        part="kernel-flow",
    )
    target = R.canonical_target(tempered.target)
    cells = R.cells(
        n=tempered.n,
        d=tempered.d,
        width=tempered.widths,
        seeds=tempered.seeds,
        target=target,
        noise=tempered.noise,
    )
    network = Study(
        "regression",
        "learning-curves-network",
        "the regression experiment's long run, beside the kernel flow",
        dict(
            n=tempered.n,
            d=tempered.d,
            width=list(tempered.widths),
            seeds=tempered.seeds,
            target=target,
            noise=tempered.noise,
        ),
        R.Protocol(t_max=tempered.t_max, times=tempered.times, n_test=tempered.n_test),
        tuple(cells),
    )
    return Suite(
        "learning-curves",
        name,
        (("", grid), ("kernel-flow", kernel_flow), ("network", network)),
        table=table,
    )


def table(root) -> list[str]:
    """The per-ridge agreement of the grid, then the tempered comparison."""
    from jaxbof import store
    from jaxbof.experiments.learning_curves import figures

    lines = list(figures.table(store.load_results(root)))
    curves = figures.tempered_curves(root)
    return lines + (list(figures.tempered_table(curves)) if curves is not None else [])
