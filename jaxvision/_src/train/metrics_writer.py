"""Metrics as JSON lines in the workdir, kept consistent with the checkpoint resumed from."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxvision._src.export import export


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; keep it readable
    return value


@export("train.MetricsWriter")
class MetricsWriter:
    """Appends ``{"step": s, name: value, ...}`` lines to ``path`` (big_vision's ``measure``).

    The history of a run (loss curve, AP by step) lives here rather than in the checkpoint.
    Opening the writer with ``resume_step`` drops the lines past that step, which belong to
    steps a crash undid, so the file always describes the run that continues.

    Only one process should write (``enabled=False`` on the others: they keep the rows in
    memory and write nothing).

    Examples:
      >>> import tempfile, pathlib
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
      >>> w = MetricsWriter(path)
      >>> w.write(50, loss=1.25)
      >>> w.write(100, loss=0.5)
      >>> w.write(100, AP50=0.75)
      >>> w.series("loss")
      ([50, 100], [1.25, 0.5])
      >>> MetricsWriter(path, resume_step=50).series("loss")
      ([50], [1.25])
    """

    def __init__(
        self, path: str | os.PathLike, *, resume_step: int | None = None, enabled: bool = True
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            self.rows = [json.loads(line) for line in lines if line.strip()]
        if resume_step is None:
            if self.rows and enabled:
                # A new run: the old lines belong to no checkpoint.
                self.rows = []
                self._rewrite()
        elif any(r["step"] > resume_step for r in self.rows):
            self.rows = [r for r in self.rows if r["step"] <= resume_step]
            if enabled:
                self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        os.replace(tmp, self.path)

    def write(self, step: int, **values: Any) -> None:
        """Appends one line: ``step`` and the given scalars (floats, ints, strings)."""
        row = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
        self.rows.append(row)
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")

    def write_dict(self, step: int, values: Mapping[str, Any]) -> None:
        """:meth:`write` for names that are not identifiers (``"AP@[.5:.95]"``)."""
        self.write(step, **dict(values))

    def series(self, name: str) -> tuple[list[int], list[Any]]:
        """Steps and values of every line holding ``name``, in order."""
        rows = [r for r in self.rows if name in r]
        return [r["step"] for r in rows], [r[name] for r in rows]

    def last(self, name: str) -> dict[str, Any] | None:
        """The newest line holding ``name``, or ``None``."""
        return next((r for r in reversed(self.rows) if name in r), None)
