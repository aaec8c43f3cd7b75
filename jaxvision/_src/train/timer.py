"""Wall and CPU time by section: compile, data, step, evaluation (big_vision's ``chrono``).

On a machine shared with other jobs the wall time of a step grows with the load while its
CPU time does not, so both are kept: the ratio says how much of the wall time was waiting.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator

from jaxvision._src.export import export


@export("train.Timer")
class Timer:
    """Accumulates wall and process-CPU seconds per named section.

    Example::

      timer = train.Timer()
      with timer("data"):
          batch = next(batches)
      with timer("compile" if first else "step"):
          state, metrics = step(state, batch, rng)
          jax.block_until_ready(metrics)   # else the step section times the dispatch only
      timer.summary()   # {"data_s": ..., "data_cpu_s": ..., "step_s": ..., "step_median_s": ...}

    Examples:
      >>> timer = Timer()
      >>> with timer("data"):
      ...     _ = sum(range(1000))
      >>> timer.count("data"), timer.count("step")
      (1, 0)
      >>> sorted(timer.summary())
      ['data_cpu_s', 'data_median_s', 'data_s', 'total_s']
    """

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._wall: dict[str, list[float]] = defaultdict(list)
        self._cpu: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Times the ``with`` block as one call of section ``name``."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self._wall[name].append(time.perf_counter() - wall)
            self._cpu[name] += time.process_time() - cpu

    def count(self, name: str) -> int:
        """How many times section ``name`` ran."""
        return len(self._wall.get(name, ()))

    def total(self, name: str) -> float:
        """Wall seconds spent in section ``name``."""
        return float(sum(self._wall.get(name, ())))

    def cpu(self, name: str) -> float:
        """Process-CPU seconds spent in section ``name`` (all threads)."""
        return float(self._cpu.get(name, 0.0))

    def median(self, name: str) -> float:
        """Median wall seconds of one call of section ``name``; NaN if it never ran."""
        calls = self._wall.get(name)
        return float(statistics.median(calls)) if calls else float("nan")

    def elapsed(self) -> float:
        """Wall seconds since the timer was made."""
        return time.perf_counter() - self._start

    def summary(self, digits: int = 4) -> dict[str, float]:
        """``<name>_s`` (wall), ``<name>_cpu_s`` and ``<name>_median_s`` per section, and
        ``total_s`` (wall since the timer was made), rounded to ``digits``."""
        out = {}
        for name in self._wall:
            out[f"{name}_s"] = round(self.total(name), digits)
            out[f"{name}_cpu_s"] = round(self.cpu(name), digits)
            out[f"{name}_median_s"] = round(self.median(name), digits)
        out["total_s"] = round(self.elapsed(), digits)
        return out
