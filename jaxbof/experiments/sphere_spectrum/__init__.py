"""The spectrum of a kernel's Gram on the sphere: the degree clusters of Gram / n on n uniform
points of S^{d-1} against the kernel's eigenvalues mu_k (jaxbof.spectra), as n grows.

run       `jaxbof reproduce sphere-spectrum [--quick]` (float64, dense eigh) and its table
figures   each cluster mean's relative error against n, log-log, per level (JAX-free)
claims    S2, the 1/n rate of the cluster means, for `jaxbof verify` (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred
from jaxbof.experiments.sphere_spectrum import claims as _claims

_study = deferred("jaxbof.experiments.sphere_spectrum.run:study")
_table = deferred("jaxbof.experiments.sphere_spectrum.run:table")
_figures = deferred("jaxbof.experiments.sphere_spectrum.figures:figures")


PLUGIN = Plugin(
    name="sphere-spectrum",
    description="degree clusters of an analytic kernel's Gram / n on the sphere against mu_k",
    paper="the addition theorem of spherical harmonics; Koltchinskii and Gine 2000",
    reproduce=(
        Reproduce(
            "sphere-spectrum",
            "degree clusters of the first-layer NTK's Gram / n "
            "on S^2 against mu_k, n from 250 to 4000, 10 seeds (float64)",
            study=_study,
        ),
    ),
    table=_table,
    figures=_figures,
    claims=_claims.CLAIMS,
)
