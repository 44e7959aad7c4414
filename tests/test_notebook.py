"""docs/notebooks/quickstart.ipynb, run as a reader runs it: in a Jupyter kernel, in a folder of its own.

The notebook is kept without outputs; here it is executed by ``nbclient`` with the project's
Python as its kernel, and its outputs are checked: no cell failed, the trials' DataFrame and the
report's figures are shown, and the Ray that the search started is stopped again.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_quickstart_notebook_runs_and_shows_the_trials_and_the_figures(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not [cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs], "kept without outputs"
    notebook.cells.append(nbformat.v4.new_code_cell("import ray\nprint('ray running:', ray.is_initialized())"))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # a failing cell raises here

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    tables = [output.data["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert any("<table" in html and "trial_id" in html for html in tables), "the trials' DataFrame"
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 2, "the report's figures"
    assert outputs[-1].text.strip() == "ray running: False"
    assert (tmp_path / "quickstart" / "runs").is_dir()  # written where the notebook runs
