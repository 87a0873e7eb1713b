"""The notebooks run top to bottom (they import jaxbof and hold no library code)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = {
    "classification.ipynb",
    "cnn.ipynb",
    "haas_spikes.ipynb",
    "ntk_spectra.ipynb",
    "regression.ipynb",
}


def test_every_notebook_is_collected():
    """A notebook that is renamed or lost would silently drop out of the parametrized test."""
    assert {p.name for p in NOTEBOOKS} == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Run with JAXBOF_NOTEBOOK_QUICK=1 (inherited by the kernel): a notebook may then run some
    sections at smaller sizes, keeping every assertion it makes on its results."""
    monkeypatch.setenv("JAXBOF_NOTEBOOK_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
