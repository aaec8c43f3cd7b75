"""Integral (soft-argmax) heatmap decoding over pixel centres, with the background debias."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.keypoints.argmax import _flat_argmax


def _window(h: Array, radius: int) -> Array:
    """``[..., H, W, K]`` bool: within ``radius`` pixels (Chebyshev) of each argmax."""
    height, width = h.shape[-3:-1]
    x, y, _ = _flat_argmax(jax.lax.stop_gradient(h))
    xs = jnp.arange(width)[:, None]
    ys = jnp.arange(height)[:, None]
    in_x = jnp.abs(xs - x[..., None, :]) <= radius  # [..., W, K]
    in_y = jnp.abs(ys - y[..., None, :]) <= radius  # [..., H, K]
    return in_y[..., :, None, :] & in_x[..., None, :, :]


@export("keypoints.soft_argmax")
def soft_argmax(
    heatmaps: ArrayLike,
    *,
    beta: float = 1.0,
    debias: bool = False,
    radius: int | None = None,
) -> Array:
    """Expected pixel-centre coordinate under ``softmax(beta * heatmaps)`` per channel.

    ``J = sum_p softmax(beta h)_p * c_p`` over pixel centres ``c = (i + 0.5, j + 0.5)``
    (continuous map pixels, as :func:`heatmap_argmax`). Integral regression (Sun et al.
    2018) trains through this: it is differentiable in ``heatmaps``.

    ``debias=True`` removes the pull of the ``exp(0) = 1`` background towards the map's
    centre: with ``C = sum exp(beta h)`` over the ``N`` pixels used and ``c_bar`` their
    mean centre, ``J' = (C J - N c_bar) / (C - N)`` (ANCHORS section 4; for the whole map
    ``N = HW`` and ``c_bar = (W/2, H/2)``). It is exact for a map that is 0 away from the
    peak and assumes non-negative maps (ANCHORS section 4 notes that mmpose's debias
    formula does not recover the peak; this one does, see the tests). Where
    ``C <= N`` (a constant zero map) the plain ``J`` is returned.

    ``radius``: the local variant (tapnet): softmax only over the pixels within
    ``radius`` (Chebyshev distance) of the argmax, which ignores distant secondary peaks.

    Numerics: the softmax subtracts the maximum, so any ``beta`` is finite; a constant map
    gives the centre of the map (or window) with a finite gradient.

    Args:
      heatmaps: ``[..., H, W, K]`` scores or logits.
      beta: inverse temperature (static float > 0).
      debias: subtract the uniform background (static).
      radius: local window half-size in pixels, ``None`` for the whole map (static).

    Returns:
      ``[..., K, 2]`` ``(x, y)`` in map pixels, float32 (or the input's float64).

    References:
      Sun et al., "Integral Human Pose Regression", ECCV 2018; Gu et al., "Removing the
      Bias of Integral Pose Regression", ICCV 2021; Doersch et al., TAPIR (local).

    Examples:
      >>> import numpy as np
      >>> h = np.zeros((64, 64, 1), np.float32)
      >>> h[40, 20, 0] = 10.0
      >>> np.round(np.asarray(soft_argmax(h)), 2)
      array([[22.3 , 39.17]], dtype=float32)
      >>> np.round(np.asarray(soft_argmax(h, debias=True)), 3)
      array([[20.5, 40.5]], dtype=float32)
    """
    h = checks.as_heatmaps(heatmaps)
    if not beta > 0:
        raise ValueError(f"`beta` must be > 0, got {beta!r}")
    if radius is not None and (int(radius) != radius or radius < 0):
        raise ValueError(f"`radius` must be a non-negative int or None, got {radius!r}")
    height, width = h.shape[-3:-1]
    logits = beta * h
    if radius is None:
        mask = jnp.ones(h.shape[-3:], bool)
    else:
        mask = _window(h, int(radius))
    logits = jnp.where(mask, logits, -jnp.inf)
    m = jax.lax.stop_gradient(jnp.max(logits, axis=(-3, -2), keepdims=True))
    e = jnp.where(mask, jnp.exp(logits - m), 0.0)  # [..., H, W, K], C = exp(m) * S
    s = jnp.sum(e, axis=(-3, -2))  # [..., K]
    cx = jnp.arange(width, dtype=h.dtype)[:, None] + 0.5
    cy = jnp.arange(height, dtype=h.dtype)[:, None] + 0.5
    sx = jnp.sum(jnp.sum(e, axis=-3) * cx, axis=-2)
    sy = jnp.sum(jnp.sum(e, axis=-2) * cy, axis=-2)
    xy = jnp.stack([sx / s, sy / s], axis=-1)
    if not debias:
        return xy
    # Background mass N exp(0) in units of exp(m): N exp(-m); its centroid sum likewise.
    bg = jnp.exp(-m[..., 0, 0, :]) * jnp.ones_like(s)
    mf = mask.astype(h.dtype)
    n = jnp.sum(mf, axis=(-3, -2)) * bg
    nx = jnp.sum(jnp.sum(mf, axis=-3) * cx, axis=-2) * bg
    ny = jnp.sum(jnp.sum(mf, axis=-2) * cy, axis=-2) * bg
    den = s - n
    ok = den > 1e-6 * s
    debiased = jnp.stack(
        [
            checks.safe_div(sx - nx, jnp.where(ok, den, 0.0)),
            checks.safe_div(sy - ny, jnp.where(ok, den, 0.0)),
        ],
        axis=-1,
    )
    return jnp.where(ok[..., None], debiased, xy)
