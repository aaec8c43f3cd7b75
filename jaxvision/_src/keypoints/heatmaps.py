"""Gaussian heatmap targets for keypoints (plain and unbiased / UDP)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks


@export("keypoints.gaussian_heatmaps")
def gaussian_heatmaps(
    keypoints: ArrayLike,
    visibility: ArrayLike | None,
    size: tuple[int, int],
    *,
    sigma: float = 2.0,
    unbiased: bool = False,
) -> Array:
    """Renders one Gaussian per keypoint, ``exp(-d^2 / (2 sigma^2))``, peak 1.

    Coordinates are continuous map pixels: pixel ``i`` covers ``[i, i + 1)`` and its
    centre is ``i + 0.5`` (an input coordinate divided by the stride gives the map
    coordinate exactly). The Gaussian is evaluated at the pixel centres.

    - ``unbiased=False`` (plain, Xiao et al. / mmpose ``MSRAHeatmap``): the mean is the
      centre of the pixel holding the keypoint, ``floor(x) + 0.5``, so the map's maximum is
      exactly 1 and an argmax decode recovers that pixel.
    - ``unbiased=True`` (DARK / UDP, mmpose ``unbiased_encoding=True``): the mean is the
      keypoint itself, which sub-pixel decoders (DARK, soft-argmax) can then recover.

    The Gaussian is not truncated at 3 sigma (mmpose's plain encoder truncates; the values
    it cuts are below exp(-4.5) = 0.011).

    Args:
      keypoints: ``[..., K, 2]`` ``(x, y)`` in map pixels.
      visibility: ``[..., K]``; keypoints with visibility <= 0 get an all-zero map.
        ``None``: all visible.
      size: ``(H, W)`` of the map.
      sigma: standard deviation in map pixels.
      unbiased: centre on the exact keypoint instead of its pixel's centre.

    Returns:
      ``[..., H, W, K]`` float32 heatmaps in ``[0, 1]``.

    References:
      Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018;
      Zhang et al., "Distribution-Aware Coordinate Representation" (DARK), CVPR 2020;
      Huang et al., "The Devil is in the Details: Unbiased Data Processing" (UDP), CVPR 2020.

    Examples:
      >>> import numpy as np
      >>> h = gaussian_heatmaps(np.array([[1.7, 0.2]]), None, (2, 3), sigma=1.0)
      >>> h.shape
      (2, 3, 1)
      >>> np.round(np.asarray(h[..., 0]), 3)
      array([[0.607, 1.   , 0.607],
             [0.368, 0.607, 0.368]], dtype=float32)
    """
    kp = checks.as_keypoints(keypoints)
    vis = checks.check_visibility(visibility, kp, "visibility")
    h, w = checks.check_size(size)
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0, got {sigma!r}")
    centre = kp if unbiased else jnp.floor(kp) + 0.5
    xs = jnp.arange(w, dtype=kp.dtype) + 0.5
    ys = jnp.arange(h, dtype=kp.dtype) + 0.5
    # Separable: exp(-dx^2/2s^2) * exp(-dy^2/2s^2), laid out as [..., H, W, K].
    gx = jnp.exp(-((xs[:, None] - centre[..., None, :, 0]) ** 2) / (2 * sigma**2))
    gy = jnp.exp(-((ys[:, None] - centre[..., None, :, 1]) ** 2) / (2 * sigma**2))
    maps = gy[..., :, None, :] * gx[..., None, :, :]
    return jnp.where((vis > 0)[..., None, None, :], maps, 0.0)
