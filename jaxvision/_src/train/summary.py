"""The end of a run: one summary dict, printed as a table and then as the last JSON line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from jaxvision._src.export import export
from jaxvision._src.train.errors import RunError


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@export("train.print_summary")
def print_summary(summary: Mapping[str, Any], *, file: TextIO | None = None) -> None:
    """Prints ``summary`` as a two-column table, then as one JSON object on the last line.

    Scripts and tests read the last line (``json.loads(out.splitlines()[-1])``); people
    read the table. Both come from the same dict, so they cannot disagree.

    Examples:
      >>> print_summary({"AP50": 0.95, "steps": 10})
      ------------------------------------------------------------
      AP50   0.95
      steps  10
      ------------------------------------------------------------
      {"AP50": 0.95, "steps": 10}
    """
    out = file or sys.stdout
    width = max((len(k) for k in summary), default=0)
    print("-" * 60, file=out)
    for key, value in summary.items():
        print(f"{key:<{width}}  {_cell(value)}", file=out)
    print("-" * 60, file=out)
    print(json.dumps(dict(summary)), file=out, flush=True)


@export("train.run_cli")
def run_cli(main: Callable[[], Any], *, errors: tuple[type[BaseException], ...] = ()) -> int:
    """Runs a script's ``main()``; a harness error ends it with one line and exit status 1.

    Use it as ``raise SystemExit(train.run_cli(main))``. :class:`RunError` (a bad
    ``--set``, a workdir of another run, a NaN loss) and the given ``errors`` (e.g.
    ``parallel.CheckpointError``, ``parallel.WorkdirLockError``) print as
    ``error: <message>`` on stderr, with no traceback; anything else propagates.

    Examples:
      >>> def main():
      ...     raise RunError("workdir runs/x holds another run")
      >>> run_cli(main)
      1
    """
    try:
        main()
    except (RunError, *errors) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0
