"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
a private cache directory, so that the CLI's persistent compile cache (under XDG_CACHE_HOME)
neither reads nor fills the user's."""

import os
import tempfile

import jax

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
jax.config.update("jax_enable_x64", True)
