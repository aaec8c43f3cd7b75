"""Bounding boxes of binary masks."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export


def _first_last(present: Array) -> tuple[Array, Array]:
    """First and last index where ``present: [..., L]`` is true; ``(0, 0)`` if none."""
    length = present.shape[-1]
    first = jnp.argmax(present, axis=-1)
    last = length - 1 - jnp.argmax(present[..., ::-1], axis=-1)
    any_ = jnp.any(present, axis=-1)
    return jnp.where(any_, first, 0), jnp.where(any_, last, 0)


@export("boxes.masks_to_boxes")
def masks_to_boxes(masks: ArrayLike) -> Array:
    """The tight ``xyxy`` box around the non-zero pixels of each mask.

    Convention (as ``torchvision.ops.masks_to_boxes``): coordinates are pixel indices with
    the maximum inclusive, so a single pixel at column x, row y gives ``[x, y, x, y]``; add
    1 to ``x2, y2`` for pixel-edge boxes. An empty mask gives ``[0, 0, 0, 0]``, which
    torchvision does not define.

    Args:
      masks: ``[..., H, W]`` masks; any non-zero value counts as foreground.

    Returns:
      ``[..., 4]`` float32 boxes ``(x1, y1, x2, y2)``.

    Raises:
      ValueError: ``masks`` has fewer than 2 dimensions.

    Examples:
      >>> masks = jnp.zeros((1, 4, 5), bool).at[0, 1:3, 2:5].set(True)
      >>> masks_to_boxes(masks)
      Array([[2., 1., 4., 2.]], dtype=float32)
    """
    masks = jnp.asarray(masks)
    if masks.ndim < 2:
        raise ValueError(f"`masks` must have shape [..., H, W], got shape {masks.shape}")
    fg = masks != 0
    x1, x2 = _first_last(jnp.any(fg, axis=-2))
    y1, y2 = _first_last(jnp.any(fg, axis=-1))
    return jnp.stack([x1, y1, x2, y2], axis=-1).astype(jnp.float32)
