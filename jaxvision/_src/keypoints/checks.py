"""Trace-time argument checks shared by the keypoint codecs, losses and metrics."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike


def as_array(x: ArrayLike, name: str) -> Array:
    """``x`` as a JAX array of real numbers, else TypeError naming ``name``."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"`{name}` must be an array, got {type(x).__name__}")
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        if x.dtype != jnp.bool_:
            raise TypeError(f"`{name}` must hold real numbers, got dtype {x.dtype}")
    return x


def as_float(x: ArrayLike, name: str) -> Array:
    """``x`` as a floating array (at least float32; bf16 is computed in float32)."""
    x = as_array(x, name)
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32)
    return x


def as_heatmaps(heatmaps: ArrayLike, name: str = "heatmaps") -> Array:
    """``[..., H, W, K]`` floating heatmaps, else ValueError naming ``name``."""
    h = as_float(heatmaps, name)
    if h.ndim < 3:
        raise ValueError(f"`{name}` must be [..., H, W, K], got shape {h.shape}")
    return h


def as_keypoints(keypoints: ArrayLike, name: str = "keypoints", *, dims: int = 2) -> Array:
    """``[..., K, dims]`` floating keypoints, else ValueError naming ``name``."""
    k = as_float(keypoints, name)
    if k.ndim < 2 or k.shape[-1] != dims:
        raise ValueError(f"`{name}` must be [..., K, {dims}], got shape {k.shape}")
    return k


def check_visibility(visibility: ArrayLike | None, keypoints: Array, name: str) -> Array:
    """``[..., K]`` visibility matching ``keypoints [..., K, d]``; ``None`` means all visible."""
    if visibility is None:
        return jnp.ones(keypoints.shape[:-1], keypoints.dtype)
    v = as_array(visibility, name)
    if v.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"`{name}` must have shape {keypoints.shape[:-1]} to match keypoints "
            f"{keypoints.shape}, got {v.shape}"
        )
    return v


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """``(H, W)`` as two positive Python ints."""
    try:
        h, w = (int(s) for s in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"`{name}` must be positive (height, width), got {size!r}")
    return h, w


def check_choice(value: object, choices: tuple[str, ...], name: str) -> str:
    """``value`` if it is one of ``choices``, else ValueError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}")
    return value


def safe_div(num: Array, den: Array, fallback: Array | float = 0.0) -> Array:
    """``num / den`` where ``den != 0``, else ``fallback``; finite gradients (double where)."""
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), fallback)
