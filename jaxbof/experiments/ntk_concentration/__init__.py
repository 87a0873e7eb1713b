"""NTK concentration at initialisation: ||H_M - H_inf||_op / ||H_inf||_op against width M, the
instrument jaxbof.concentration run over its published grid.

run       `jaxbof reproduce ntk-concentration`
figures   the log-log picture with fitted slopes (JAX-free)
claims    S1, the M^(-1/2) slope, for `jaxbof verify` (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred
from jaxbof.experiments.ntk_concentration import claims as _claims

_study = deferred("jaxbof.experiments.ntk_concentration.run:study")
_table = deferred("jaxbof.experiments.ntk_concentration.run:table")
_figures = deferred("jaxbof.experiments.ntk_concentration.figures:figures")


PLUGIN = Plugin(
    name="ntk-concentration",
    description="||H_M - H_inf||_op / ||H_inf||_op of the empirical NTK against width",
    reproduce=(
        Reproduce("ntk-concentration", "NTK concentration against width (float64)", study=_study),
    ),
    table=_table,
    figures=_figures,
    claims=_claims.CLAIMS,
)
