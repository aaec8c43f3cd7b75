"""Label-map transforms used before counting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("metrics.reduce_zero_label")
def reduce_zero_label(labels: ArrayLike, *, ignore_index: int = 255) -> jax.Array:
    """Shifts labels down by one and makes label 0 ``ignore_index`` (mmseg's option).

    For datasets such as ADE20K where 0 means "other / unlabelled" and classes are
    ``1..C``: label 0 becomes ``ignore_index``, label ``k`` becomes ``k - 1``. An existing
    ``ignore_index`` pixel stays ``ignore_index``.

    Args:
      labels: ``[...]`` integer label map (``uint8`` included).
      ignore_index: the label given to former zeros; must fit the dtype of ``labels``.

    Returns:
      ``[...]`` labels of the same dtype.

    Examples:
      >>> reduce_zero_label(jnp.array([0, 1, 2, 255], jnp.uint8))
      Array([255,   0,   1, 255], dtype=uint8)
    """
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class labels, got dtype {labels.dtype}")
    info = jnp.iinfo(labels.dtype)
    if not info.min <= ignore_index <= info.max:
        raise ValueError(f"ignore_index={ignore_index} does not fit labels of dtype {labels.dtype}")
    fill = jnp.asarray(ignore_index, labels.dtype)
    keep = (labels == 0) | (labels == fill)
    return jnp.where(keep, fill, labels - jnp.asarray(1, labels.dtype))
