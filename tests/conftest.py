"""Test configuration: float64 everywhere (tests may enable x64; library modules must not)."""

import jax

jax.config.update("jax_enable_x64", True)
