"""Builds the Colab notebooks from their text twins and executes them.

Each notebook is written as a jupytext Markdown file (``notebooks/NN_name.md``, the file
to review and edit) paired with the ``.ipynb`` that Colab opens. This script turns every
``.md`` into its ``.ipynb`` and executes it so that the committed notebook shows its
pictures::

    python notebooks/build.py                 # every notebook, full sizes
    python notebooks/build.py 01_quickstart   # one notebook
    JAXVISION_FAST=1 python notebooks/build.py   # the CI's small sizes

``tests/notebooks/test_notebooks.py`` checks that each pair is in sync and executes every
notebook in the fast mode.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def build(text_file: Path, *, timeout_s: int = 1800) -> Path:
    """Writes and executes the ``.ipynb`` of one jupytext Markdown notebook."""
    notebook = jupytext.read(text_file)
    notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,md"
    NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(text_file.parent)}},
    ).execute()
    out = text_file.with_suffix(".ipynb")
    nbformat.write(notebook, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="notebook names without suffix (default: all)")
    args = parser.parse_args(argv)
    files = [HERE / f"{n}.md" for n in args.names] or sorted(HERE.glob("[0-9][0-9]_*.md"))
    for text_file in files:
        t0 = time.perf_counter()
        out = build(text_file)
        print(f"{out.name}: executed in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
