"""Horizontal flips of keypoints and heatmaps with the left / right swap."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.keypoints.constants import COCO_FLIP_PAIRS


def _permutation(k: int, flip_pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    perm = np.arange(k)
    for a, b in flip_pairs:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"`flip_pairs` index out of range for K = {k}: {(a, b)}")
        perm[a], perm[b] = b, a
    return perm


@export("keypoints.flip_keypoints")
def flip_keypoints(
    keypoints: ArrayLike,
    width: float,
    *,
    flip_pairs: tuple[tuple[int, int], ...] = COCO_FLIP_PAIRS,
) -> Array:
    """Mirrors keypoints about the vertical centre line and swaps left / right joints.

    With continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``), a flip of a
    ``width``-wide image maps ``x`` to ``width - x`` (pixel ``i`` to ``width - 1 - i``).

    Args:
      keypoints: ``[..., K, D]`` with ``x`` first (``D`` = 2, or 3 with a visibility or
        score column that is carried along).
      width: image (or map) width in the same pixels.
      flip_pairs: index pairs swapped (default COCO's 8 pairs).

    Returns:
      ``[..., K, D]`` flipped keypoints.

    Examples:
      >>> import numpy as np
      >>> kp = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
      >>> np.asarray(flip_keypoints(kp, 10.0, flip_pairs=((1, 2),)))
      array([[9., 2.],
             [5., 6.],
             [7., 4.]], dtype=float32)
    """
    kp = checks.as_float(keypoints, "keypoints")
    if kp.ndim < 2 or kp.shape[-1] < 2:
        raise ValueError(f"`keypoints` must be [..., K, D >= 2], got shape {kp.shape}")
    kp = kp[..., _permutation(kp.shape[-2], flip_pairs), :]
    return kp.at[..., 0].set(width - kp[..., 0])


@export("keypoints.flip_heatmaps")
def flip_heatmaps(
    heatmaps: ArrayLike, *, flip_pairs: tuple[tuple[int, int], ...] = COCO_FLIP_PAIRS
) -> Array:
    """Mirrors ``[..., H, W, K]`` heatmaps in W and swaps left / right channels (flip test).

    Examples:
      >>> import numpy as np
      >>> h = np.arange(4.0).reshape(1, 2, 2)
      >>> np.asarray(flip_heatmaps(h, flip_pairs=((0, 1),)))[0]
      array([[3., 2.],
             [1., 0.]], dtype=float32)
    """
    h = checks.as_heatmaps(heatmaps)
    return jnp.flip(h, axis=-2)[..., _permutation(h.shape[-1], flip_pairs)]
