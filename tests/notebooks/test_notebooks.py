"""The Colab notebooks: each in sync with its text twin, each executing top to bottom.

The notebooks run in their fast mode (``JAXVISION_FAST=1``, read in each notebook's
cell tagged ``parameters``) on the simulated CPU devices of the test set-up. One kernel
per test process runs them one after the other, its namespace cleared (``%reset -f``)
before each: a kernel start and the imports of jax, matplotlib and jaxvision cost about
4 s per notebook, paid once instead.
"""

from __future__ import annotations

import os
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


RESET = "%reset -f\nimport matplotlib.pyplot as plt\nplt.close('all')\ndel plt"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One python3 kernel in fast mode, shared by this module's notebook runs."""
    jupyter_client = pytest.importorskip("jupyter_client")
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(
        env={**os.environ, "JAXVISION_FAST": "1"}, cwd=str(tmp_path_factory.mktemp("kernel"))
    )
    yield manager
    manager.shutdown_kernel(now=True)


def _execute(notebook, kernel) -> None:
    """Runs every cell of ``notebook`` in ``kernel`` after clearing its namespace."""
    notebook.cells.insert(0, nbformat.v4.new_code_cell(RESET))
    try:
        nbclient.NotebookClient(notebook, km=kernel, timeout=600).execute()
    finally:
        notebook.cells.pop(0)


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
def test_notebook_executes_in_fast_mode(text_file, kernel):
    notebook = jupytext.read(text_file)
    _execute(notebook, kernel)
    images = sum(
        "image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])
    )
    figures = sum("plt.show()" in c.source for c in notebook.cells)
    assert images >= figures, f"{text_file.name}: {figures} figures shown, {images} rendered"


def test_a_notebook_that_raises_fails(tmp_path, kernel):
    # A scratch copy of a real notebook, one code cell after the parameters broken.
    notebook = jupytext.read(TEXT_FILES[0])
    code = [c for c in notebook.cells if c.cell_type == "code"]
    code[2].source = "raise RuntimeError('broken cell')\n" + code[2].source
    scratch = tmp_path / TEXT_FILES[0].name
    jupytext.write(notebook, scratch)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="broken cell"):
        _execute(jupytext.read(scratch), kernel)
