"""The three notebooks run headless with tiny settings; a failing cell fails the suite. Outputs stay out of git."""

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
TINY = {"SEPJAX_NB_STEPS": "120", "SEPJAX_NB_CHORALES": "3", "MPLBACKEND": "Agg"}


@pytest.mark.parametrize("name", ["overfit_sanity_check", "data_inspection", "review_run"])
def test_notebook_runs(name, tmp_path, monkeypatch):
    for key, value in TINY.items():
        monkeypatch.setenv(key, value)
    if name == "review_run":
        monkeypatch.setenv("SEPJAX_NB_STEPS", "8")
        monkeypatch.setenv("SEPJAX_NB_CHORALES", "12")
    # The notebooks' scratch folders (tempfile.mkdtemp) land in tmp_path, which pytest cleans up.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # The kernel's `python` must be this interpreter (the project's virtual environment).
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    if name == "overfit_sanity_check":
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "sanity check passed" in text
        assert any("audio/wav" in o.get("data", {}) or "text/html" in o.get("data", {}) for o in outputs)


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
