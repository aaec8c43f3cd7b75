"""Argmax heatmap decoding with quarter-offset or DARK (Taylor) sub-pixel refinement."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks

REFINES = ("none", "quarter", "dark")


def _flat_argmax(h: Array) -> tuple[Array, Array, Array]:
    """Integer ``(x, y)`` of each channel's maximum and the maximum, ``h: [..., H, W, K]``."""
    height, width = h.shape[-3:-1]
    flat = jnp.moveaxis(h, -1, -3).reshape(*h.shape[:-3], h.shape[-1], height * width)
    idx = jnp.argmax(flat, axis=-1)
    return idx % width, idx // width, jnp.max(flat, axis=-1)


def _gather(h: Array, x: Array, y: Array) -> Array:
    """``h[..., y, x, k]`` per channel for integer maps ``x, y: [..., K]`` (clamped)."""
    height, width = h.shape[-3:-1]
    x = jnp.clip(x, 0, width - 1)
    y = jnp.clip(y, 0, height - 1)
    flat = jnp.moveaxis(h, -1, -3).reshape(*h.shape[:-3], h.shape[-1], height * width)
    return jnp.take_along_axis(flat, (y * width + x)[..., None], axis=-1)[..., 0]


def _blur(h: Array, sigma: float) -> Array:
    """Separable Gaussian blur of ``[..., H, W, K]`` maps (zero padding), radius 3 sigma."""
    r = max(1, math.ceil(3 * sigma))
    t = jnp.arange(-r, r + 1, dtype=h.dtype)
    g = jnp.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    height, width = h.shape[-3:-1]
    hp = jnp.pad(h, [(0, 0)] * (h.ndim - 3) + [(r, r), (r, r), (0, 0)])
    rows = sum(g[i] * hp[..., i : i + height, :, :] for i in range(2 * r + 1))
    return sum(g[i] * rows[..., :, i : i + width, :] for i in range(2 * r + 1))


def _quarter(h: Array, x: Array, y: Array) -> Array:
    height, width = h.shape[-3:-1]
    dx = _gather(h, x + 1, y) - _gather(h, x - 1, y)
    dy = _gather(h, x, y + 1) - _gather(h, x, y - 1)
    dx = jnp.where((x > 0) & (x < width - 1), dx, 0.0)
    dy = jnp.where((y > 0) & (y < height - 1), dy, 0.0)
    return 0.25 * jnp.stack([jnp.sign(dx), jnp.sign(dy)], axis=-1)


def _dark(h: Array, x: Array, y: Array, blur_sigma: float | None) -> Array:
    """Newton step ``-H^-1 g`` on the log map at the argmax (DARK's Taylor expansion)."""
    height, width = h.shape[-3:-1]
    if blur_sigma:
        peak = jnp.max(h, axis=(-3, -2), keepdims=True)
        b = _blur(h, blur_sigma)
        h = b * checks.safe_div(peak, jnp.max(b, axis=(-3, -2), keepdims=True))
    logh = jnp.log(jnp.maximum(h, 1e-10))

    def at(ox: int, oy: int) -> Array:
        return _gather(logh, x + ox, y + oy)

    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    hyy = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    inner = (x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)
    # A maximum has a negative-definite Hessian; anywhere else the step is not taken.
    ok = inner & (det > 1e-12) & (hxx < 0)
    ox = checks.safe_div(-(hyy * gx - hxy * gy), jnp.where(ok, det, 0.0))
    oy = checks.safe_div(-(hxx * gy - hxy * gx), jnp.where(ok, det, 0.0))
    # The step stays inside the argmax pixel's neighbours.
    return jnp.clip(jnp.stack([ox, oy], axis=-1), -1.0, 1.0)


@export("keypoints.heatmap_argmax")
def heatmap_argmax(
    heatmaps: ArrayLike,
    *,
    refine: str = "none",
    blur_sigma: float | None = None,
) -> tuple[Array, Array]:
    """Decodes each heatmap channel at its maximum, with optional sub-pixel refinement.

    Coordinates are continuous map pixels (pixel ``i`` covers ``[i, i + 1)``), so the
    argmax pixel decodes to its centre ``i + 0.5``; multiply by the stride for input pixels.

    - ``refine="none"``: the argmax pixel's centre (up to +-0.5 map px of error).
    - ``"quarter"``: plus 0.25 px towards the higher neighbour in x and in y (Newell et al.,
      Xiao et al.; mmpose ``refine_keypoints``), not applied on the border.
    - ``"dark"``: one Newton step ``-H^-1 grad`` on the log heatmap at the argmax, central
      differences of one pixel (DARK, Zhang et al. CVPR 2020). It recovers a Gaussian's
      mean exactly; on the border or where the Hessian is not negative definite the step
      is 0. ``blur_sigma``: first smooth the maps with a Gaussian of that sigma (DARK's
      distribution modulation, for network outputs; mmpose blurs with an 11 px kernel),
      rescaled to the original maximum.

    Args:
      heatmaps: ``[..., H, W, K]``.
      refine: ``"none"`` | ``"quarter"`` | ``"dark"`` (static).
      blur_sigma: optional DARK blur in map pixels (only with ``refine="dark"``).

    Returns:
      ``(keypoints [..., K, 2] (x, y) in map pixels, scores [..., K])``; the score is the
      heatmap's maximum. Coordinates carry no gradient (argmax).

    Examples:
      >>> import numpy as np
      >>> from jaxvision._src.keypoints.heatmaps import gaussian_heatmaps
      >>> h = gaussian_heatmaps(np.array([[5.3, 4.8]]), None, (8, 8), unbiased=True)
      >>> np.asarray(heatmap_argmax(h)[0])
      array([[5.5, 4.5]], dtype=float32)
      >>> np.asarray(heatmap_argmax(h, refine="quarter")[0])
      array([[5.25, 4.75]], dtype=float32)
      >>> np.round(np.asarray(heatmap_argmax(h, refine="dark")[0]), 4)
      array([[5.3, 4.8]], dtype=float32)
    """
    h = checks.as_heatmaps(heatmaps)
    refine = checks.check_choice(refine, REFINES, "refine")
    if blur_sigma is not None and (refine != "dark" or not blur_sigma > 0):
        raise ValueError(f"`blur_sigma` must be > 0 and needs refine='dark', got {blur_sigma!r}")
    h = jax.lax.stop_gradient(h)
    x, y, score = _flat_argmax(h)
    xy = jnp.stack([x, y], axis=-1).astype(h.dtype) + 0.5
    if refine == "quarter":
        xy = xy + _quarter(h, x, y)
    elif refine == "dark":
        xy = xy + _dark(h, x, y, blur_sigma)
    return xy, score
