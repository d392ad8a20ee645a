"""Notebooks: stored without outputs, each with a tagged ``parameters`` cell, and each executes
from a clean checkout (run from a temporary working directory: none may depend on the cwd)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


# per-cell state an editor saves and nbstripout removes (run timings, view state)
RUN_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_without_outputs(path):
    dirty = [i for i, c in enumerate(_cells(path))
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
             or set(c.get("metadata", {})) & set(RUN_METADATA)]
    assert dirty == [], f"{path.name}: cells {dirty} have outputs or run metadata; run nbstripout"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_says_which_study(path):
    """A notebook that reads the shipped study reads it through its plan file and says how
    much of the plan is trained, so interim numbers read as interim."""
    src = "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")
    if "shipped_runs(" in src or "collect(" in src:
        assert "shipped_plan(" in src and "status_lines(" in src, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_has_question_and_parameters_cells(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown"
    assert "parameters" in cells[1].get("metadata", {}).get("tags", [])


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_executes(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []
