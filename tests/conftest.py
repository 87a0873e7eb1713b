"""Test configuration: float64 everywhere (tests may enable x64; library modules must not), and
one persistent compile cache for the whole test session, cold at its start, under a private
XDG_CACHE_HOME (never the user's): the CLI's default cache directory is the same one, so every
program compiled once in the session (by the library or by an in-process CLI run) is loaded,
not compiled again, wherever a later test builds it again."""

import os
import tempfile

import jax

# pytest-xdist's workers of one run (`-n auto`, the README's command) share it, named by the
# run's id; a lone process makes its own
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN:
    os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"jaxbof-tests-cache-{_RUN}")
    os.makedirs(os.environ["XDG_CACHE_HOME"], exist_ok=True)
else:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="jaxbof-tests-cache-")
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
