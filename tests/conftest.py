"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
no persistent compile cache in the test process: JAX decides whether to use it at its first
compile, so compiling once here, before any CLI test sets a cache directory, keeps every later
compile in memory (writing each one to disk would slow the suite by half). The cache itself is
tested in subprocesses (test_scale.py), under a private XDG_CACHE_HOME, never the user's."""

import os
import tempfile

import jax

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
jax.config.update("jax_enable_x64", True)
jax.jit(lambda x: x + 1)(0)  # the first compile: the cache is off for this process
