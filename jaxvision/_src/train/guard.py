"""The non-finite loss guard: stop at the first NaN / inf, before it reaches a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxvision._src.export import export
from jaxvision._src.train.errors import NonFiniteLossError


@export("train.check_finite")
def check_finite(step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar metrics of ``step`` as floats; raises if any is NaN or infinite.

    Call it on every step's metrics before the step's checkpoint is written: a run then
    never saves non-finite weights, so the newest checkpoint stays a finite one (and a
    rotation of ``max_to_keep`` never drops the last good step for a bad one). It waits
    for the step to finish (one device-to-host copy of a few scalars).

    Args:
      step: the step the metrics belong to (updates done).
      metrics: name -> scalar (a step's ``loss``, its terms, ``grad_norm``...); non-scalar
        entries are ignored.

    Returns:
      ``{name: float}`` of the scalar entries.

    Raises:
      NonFiniteLossError: naming the step and every non-finite term.

    Examples:
      >>> check_finite(3, {"loss": 1.5, "loss_ce": 0.5})
      {'loss': 1.5, 'loss_ce': 0.5}
      >>> try:
      ...     check_finite(4, {"loss": float("nan"), "loss_ce": 0.5})
      ... except NonFiniteLossError as e:
      ...     print(e.step, e.terms)
      4 {'loss': nan}
    """
    host = jax.device_get(dict(metrics))
    values = {k: float(v) for k, v in host.items() if np.ndim(v) == 0}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(step, bad)
    return values
