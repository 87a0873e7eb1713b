"""`jaxbof reproduce ntk-concentration`: ||H_M - H_inf||_op / ||H_inf||_op against width M
(jaxbof.concentration), in float64 on the host, resumable (jaxbof.runner), with the fitted
slopes on stdout."""

from __future__ import annotations

from jaxbof.contract import HostStudy, Schema


def study(quick: bool) -> HostStudy:
    """The published grid (quick: `concentration.QUICK`), as a study the runner resumes."""
    from jaxbof import concentration

    config = concentration.QUICK if quick else concentration.Config()
    total = len(config.nd) * len(config.widths) * config.seeds

    def compute(on_rows, stored):
        done = {(r["n"], r["d"], r["width"], r["seed"]) for r in stored}
        concentration.run(config, on_row=lambda row: on_rows([row]), skip=done)

    return HostStudy(
        "ntk-concentration",
        "ntk-concentration" + ("-quick" if quick else ""),
        f"{total} Grams",
        config._asdict(),
        Schema(concentration.SCHEMA),
        compute,
        x64=True,
    )


def table(rows, config=None) -> list[str]:
    """The fitted log-log slope of each (n, d)."""
    from jaxbof import concentration

    return ["n,d,slope,prefactor,widths"] + [
        f"{fit.n},{fit.d},{fit.slope:.4f},{fit.prefactor:.4g},{fit.widths}"
        for fit in concentration.fit_slopes(rows)
    ]
