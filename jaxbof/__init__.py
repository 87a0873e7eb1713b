"""jaxbof: benign overfitting in two-layer (leaky) ReLU networks, verified by experiment in JAX."""

__version__ = "0.1.0"
