"""Trace-time argument checks and dtype promotion shared by the box and loss functions."""

from __future__ import annotations

import numbers

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

FORMATS = ("xyxy", "xywh", "cxcywh")
REDUCTIONS = ("none", "mean", "sum")


def check_fmt(fmt: object, name: str = "fmt") -> str:
    """Returns ``fmt`` if it names a known box format, else raises ValueError naming it."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"`{name}` must be one of {FORMATS}, got {fmt!r}")
    return fmt


def check_reduction(reduction: object) -> str:
    """Returns ``reduction`` if it is ``none``, ``mean`` or ``sum``, else raises ValueError."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_float(value: object, name: str, *, minimum: float | None = 0.0) -> float:
    """Returns a static floating-point option as a Python float.

    Raises:
      TypeError: ``value`` is not a real floating-point scalar (``bool`` and ``int`` are
        refused so that ``eps=1`` is not silently taken for ``eps=1e-7``-like intent).
      ValueError: ``value`` is below ``minimum`` or not finite.
    """
    is_float = isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
    if not is_float:
        raise TypeError(f"`{name}` must be a Python float, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"`{name}` must be a finite float{bound}, got {value!r}")
    return value


def compute_dtype(*arrays: Array) -> jnp.dtype:
    """The floating dtype computations run in: at least float32 (ints and bf16 promote)."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def output_dtype(*arrays: Array) -> jnp.dtype:
    """The dtype results are returned in: the inputs' floating dtype, float32 for integers."""
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def as_boxes(boxes: ArrayLike, name: str) -> Array:
    """Converts ``boxes`` to an array and checks that its last dimension is 4."""
    if isinstance(boxes, (str, bytes)) or boxes is None:
        raise TypeError(f"`{name}` must be an array of boxes, got {type(boxes).__name__}")
    boxes = jnp.asarray(boxes)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"`{name}` must have shape [..., 4], got shape {boxes.shape}")
    if not (jnp.issubdtype(boxes.dtype, jnp.floating) or jnp.issubdtype(boxes.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must hold real numbers, got dtype {boxes.dtype}")
    return boxes
