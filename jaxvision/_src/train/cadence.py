"""When to log, evaluate and save: big_vision's ``itstime`` as one small function."""

from __future__ import annotations

from jaxvision._src.export import export


@export("train.every")
def every(step: int, period: int, *, total: int | None = None) -> bool:
    """Whether ``step`` (1-based: updates done) is on a cadence of ``period`` steps.

    True on every multiple of ``period`` and, when ``total`` is given, on the last step;
    a ``period`` of 0 or less never fires (except on the last step).

    Examples:
      >>> [s for s in range(1, 11) if every(s, 4, total=10)]
      [4, 8, 10]
      >>> every(3, 0, total=10), every(10, 0, total=10)
      (False, True)
    """
    if total is not None and step == total:
        return True
    return period > 0 and step % period == 0
