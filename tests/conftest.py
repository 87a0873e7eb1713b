"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
one persistent compile cache for the whole test session, cold at its start, under a private
XDG_CACHE_HOME (never the user's): the CLI's default cache directory is the same one, so every
program compiled once in the session (by the library or by an in-process CLI run) is loaded,
not compiled again, wherever a later test builds it again."""

import os
import tempfile

import jax

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.environ["XDG_CACHE_HOME"], "jaxbof", "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
