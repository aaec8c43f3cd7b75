"""The Colab notebooks: each in sync with its text twin, each executing top to bottom.

The notebooks run in their fast mode (``JAXVISION_FAST=1``, read in each notebook's
cell tagged ``parameters``), in a fresh kernel of this Python, on the simulated CPU
devices of the test set-up.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
TEXT_FILES = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.md"))
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def _execute(notebook, workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("JAXVISION_FAST", "1")
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()


def test_every_text_file_has_its_notebook_and_back():
    assert TEXT_FILES, "no notebooks found"
    assert [p.stem for p in TEXT_FILES] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("text_file", TEXT_FILES, ids=lambda p: p.stem)
def test_notebook_is_in_sync_with_its_text_file(text_file):
    paired = nbformat.read(text_file.with_suffix(".ipynb"), as_version=4)
    assert _cells(paired) == _cells(jupytext.read(text_file)), (
        f"{text_file.name} and its .ipynb differ: run `python notebooks/build.py {text_file.stem}`"
    )


@pytest.mark.parametrize("text_file", TEXT_FILES, ids=lambda p: p.stem)
def test_notebook_shows_badge_installs_and_reads_the_fast_switch(text_file):
    notebook = jupytext.read(text_file)
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    badge = f"colab.research.google.com/github/{url.split('github.com/')[1]}/blob/main/notebooks/"
    assert badge + f"{text_file.stem}.ipynb" in notebook.cells[0].source
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert re.search(rf'REPOSITORY = "{re.escape(url)}"', code[0].source), "install cell"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "JAXVISION_FAST" in tagged[0].source


@pytest.mark.parametrize("text_file", TEXT_FILES, ids=lambda p: p.stem)
def test_notebook_executes_in_fast_mode(text_file, tmp_path, monkeypatch):
    notebook = jupytext.read(text_file)
    _execute(notebook, tmp_path, monkeypatch)
    images = sum(
        "image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])
    )
    figures = sum("plt.show()" in c.source for c in notebook.cells)
    assert images >= figures, f"{text_file.name}: {figures} figures shown, {images} rendered"


def test_a_notebook_that_raises_fails(tmp_path, monkeypatch):
    notebook = jupytext.read(TEXT_FILES[0])
    notebook.cells = notebook.cells[:1] + [
        nbformat.v4.new_code_cell("raise RuntimeError('broken cell')")
    ]
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="broken cell"):
        _execute(notebook, tmp_path, monkeypatch)
