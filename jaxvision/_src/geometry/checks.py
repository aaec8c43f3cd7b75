"""Trace-time shape checks shared by the geometry functions."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def as_float(x: ArrayLike) -> Array:
    """``x`` as a JAX array of at least float32 (integers and bf16 promote)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32)
    return x


def as_matrix(matrix: ArrayLike, name: str = "matrix") -> Array:
    """``matrix`` as a float array ``[..., 2, 3]``, else a ValueError naming it."""
    m = as_float(matrix)
    if m.ndim < 2 or m.shape[-2:] != (2, 3):
        raise ValueError(f"`{name}` must be [..., 2, 3], got shape {m.shape}")
    return m


def as_points(points: ArrayLike, name: str) -> Array:
    """``points`` as a float array ``[..., P, 2]``, else a ValueError naming it."""
    p = as_float(points)
    if p.ndim < 2 or p.shape[-1] != 2:
        raise ValueError(f"`{name}` must be [..., P, 2], got shape {p.shape}")
    return p


def check_size(out_size: object) -> tuple[int, int]:
    """``out_size`` (an int or ``(height, width)``) as a pair of positive Python ints."""
    size = (out_size, out_size) if isinstance(out_size, int) else out_size
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    )
    if not ok:
        raise ValueError(
            f"`out_size` must be a positive int or a (height, width) pair of them, got {out_size!r}"
        )
    return int(size[0]), int(size[1])
