"""Benign overfitting in fixed dimension: Haas, Holzmüller, von Luxburg and Steinwart, "Mind the
spikes" (NeurIPS 2023). A smooth kernel plus narrow spikes, k_smooth + rho k_spike(gamma) with
gamma -> 0, interpolates through the spikes while its smooth part does kernel ridge regression
with ridge rho: ridgeless regression becomes consistent in any fixed dimension, where the
Laplace kernel and ReLU networks overfit in a tempered way. As an activation, the spikes are a
small high-frequency oscillation added to relu.

Two plug-ins and one command:

    spiky-kernel   kernel regression on the sphere (NumPy, float64, host): the published
                   heatmap over (gamma_spike, rho) with its eigenlearning prediction, and
                   tempered against benign in n (`jaxbof sweep spiky-kernel ...`)
    spiky-net      the published networks, SGD with batch size 1, every seed and both
                   activations at once on the engine (`jaxbof sweep spiky-net ...`)
    activation     from a dot-product kernel to the Hermite coefficients of the activation
                   whose NNGP kernel (or NTK) it is (`jaxbof activation ...`)

and `jaxbof reproduce haas-spikes [--quick]` runs the heatmap, the study in n and the networks.

Modules: activations, activation_command (the kernel-to-activation map and its command);
kernels, kernel_claims, kernel_figures (kernel regression); grid, net, cli, claims, figures
(the networks). Only net imports JAX.
"""

from jaxbof.experiments import Command, Plugin, Reproduce, deferred
from jaxbof.experiments.haas_spikes import claims as _claims
from jaxbof.experiments.haas_spikes import cli as _cli
from jaxbof.experiments.haas_spikes import kernel_claims as _kernel_claims
from jaxbof.experiments.haas_spikes.grid import Cell

PAPER = "Haas, Holzmüller, von Luxburg and Steinwart, NeurIPS 2023 (arXiv 2305.14077)"
_K = "jaxbof.experiments.haas_spikes.kernels:"

KERNEL = Plugin(
    name="spiky-kernel",
    description="ridgeless spiky-smooth kernel regression on the sphere against eigenlearning "
    "(float64)",
    paper=PAPER,
    add_arguments=deferred(_K + "add_arguments"),
    from_args=deferred(_K + "from_args"),
    table=deferred(_K + "table"),
    figures=deferred("jaxbof.experiments.haas_spikes.kernel_figures:figures"),
    claims=_kernel_claims.CLAIMS,
)

ACTIVATION = Command(
    "activation",
    "the Hermite coefficients of the activation whose NNGP kernel (or two-layer "
    "NTK) is a given dot-product kernel; writes coefficients.csv and activation.png",
    deferred("jaxbof.experiments.haas_spikes.activation_command:add_arguments"),
    deferred("jaxbof.experiments.haas_spikes.activation_command:run"),
)

NET = Plugin(
    name="spiky-net",
    description="ReLU against spiky-smooth two-layer networks, SGD with batch size 1 on the circle",
    paper=PAPER,
    experiment=deferred("jaxbof.experiments.haas_spikes.net:experiment"),
    cell=Cell,
    add_arguments=_cli.add_arguments,
    from_args=_cli.from_args,
    reproduce=(Reproduce("haas-spikes", _cli.REPRODUCE_HELP, study=_cli.haas_study),),
    table=_cli.table,
    figures=deferred("jaxbof.experiments.haas_spikes.figures:figures"),
    engine=deferred("jaxbof.experiments.haas_spikes.net:default_engine"),
    commands=(ACTIVATION,),
    claims=_claims.CLAIMS,
)
