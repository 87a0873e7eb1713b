"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
one persistent compile cache for the whole test session, cold at its start, under a private
XDG_CACHE_HOME (never the user's): the CLI's default cache directory is the same one, so every
program compiled once in the session (by the library or by an in-process CLI run) is loaded,
not compiled again, wherever a later test builds it again."""

import os
import shutil
import tempfile

import jax

# The first process of a run (pytest itself, or pytest-xdist's controller under `-n auto`, the
# README's command) makes the directory and removes it at the end; xdist's workers, started
# after it, inherit it through the environment and share it.
_OWNER = "JAXBOF_TESTS_CACHE" not in os.environ
if _OWNER:
    os.environ["JAXBOF_TESTS_CACHE"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
os.environ["XDG_CACHE_HOME"] = os.environ["JAXBOF_TESTS_CACHE"]
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(os.environ["XDG_CACHE_HOME"], "jaxbof", "xla"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The longest tests (seconds on the 2-core machine) go first, so that with several workers none
# of them starts last and leaves the others idle (`--dist worksteal` hands the rest out as
# workers free up); alone, only the order changes.
FIRST = ("test_scale.py::test_presets_on_1_2_4_devices_give_the_rows_of_one_device",  # 145
         "test_notebooks.py::test_notebook_runs")  # 58


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return next((i for i, name in enumerate(FIRST) if name in item.nodeid), len(FIRST))
    items.sort(key=rank)  # stable: every other test keeps its place


def pytest_unconfigure(config):
    if _OWNER:  # after every worker has finished
        shutil.rmtree(os.environ["JAXBOF_TESTS_CACHE"], ignore_errors=True)
