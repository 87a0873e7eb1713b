"""Predicted learning curves: kernel ridge regression on the sphere measured against the
eigenlearning equations (jaxbof.eigenlearning), at several ridges including 0.

krr       the measured side (NumPy, float64) with the prediction in each row
run       `jaxbof reproduce learning-curves [--quick]`
figures   risk against n (measured points, predicted lines), the learnability staircase (JAX-free)
claims    S3 and S4, the relative gap with and without a ridge, for `jaxbof verify` (JAX-free)
"""

from jaxbof.experiments import Plugin, Reproduce, deferred
from jaxbof.experiments.learning_curves import claims as _claims

_study = deferred("jaxbof.experiments.learning_curves.run:study")
_figures = deferred("jaxbof.experiments.learning_curves.figures:figures")


PLUGIN = Plugin(
    name="learning-curves",
    description="kernel ridge regression on the sphere against the eigenlearning prediction",
    paper="Simon et al. 2021/2023; Bordelon, Canatar and Pehlevan 2020",
    reproduce=(
        Reproduce(
            "learning-curves",
            "kernel ridge regression against the eigenlearning "
            "prediction, n from 10 to 5120, ridges 0, 1e-4 n, 1e-2 n (float64)",
            study=_study,
        ),
    ),
    figures=_figures,
    claims=_claims.CLAIMS,
)
