"""Least-squares similarity transforms between point sets (Umeyama 1991)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.geometry import checks


@export("geometry.estimate_similarity")
def estimate_similarity(
    src: ArrayLike, dst: ArrayLike, *, weights: ArrayLike | None = None
) -> Array:
    """The similarity transform (scale, rotation, translation) best mapping ``src`` onto ``dst``.

    Minimises ``sum_p w_p |dst_p - (s R src_p + t)|^2`` over ``s >= 0``, rotations ``R``
    (no reflection) and ``t``: Umeyama's least-squares estimate, the one scikit-image's
    ``SimilarityTransform.estimate`` and insightface's alignment compute. In 2-D,
    ``s R = [[a, -b], [b, a]]`` makes the problem linear and Umeyama's SVD solution reduces
    to the closed form used here, with centred points ``u = src - mean``, ``v = dst - mean``::

        a = sum w u.v / sum w |u|^2,    b = sum w (u_x v_y - u_y v_x) / sum w |u|^2

    which is smooth (no SVD), so gradients are finite everywhere.

    Args:
      src: ``[..., P, 2]`` source points ``(x, y)``.
      dst: ``[..., P, 2]`` destination points; leading dimensions broadcast with ``src``'s.
      weights: optional ``[..., P]`` non-negative point weights (0 drops a point, e.g. an
        invisible keypoint); all ones by default.

    Returns:
      ``[..., 2, 3]`` matrices ``[s R | t]`` in OpenCV's convention (``dst ~ M @ (x, y, 1)``),
      ready for ``warp_affine``. Degenerate input (all source points equal, or all weights
      0) gives ``s = 0``: the matrix that maps everything onto the weighted mean of ``dst``
      (scikit-image returns NaN there).

    Raises:
      ValueError: ``src`` or ``dst`` is not ``[..., P, 2]``, their ``P`` differ, or
        ``weights`` is not ``[..., P]``.

    References:
      Umeyama, "Least-squares estimation of transformation parameters between two point
      patterns", IEEE TPAMI 13(4), 1991.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import geometry
      >>> src = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
      >>> dst = 2 * src[:, ::-1] * jnp.array([-1.0, 1.0]) + jnp.array([3.0, 4.0])
      >>> geometry.estimate_similarity(src, dst).round(4) + 0.0  # 2 x, 90 degrees, (3, 4)
      Array([[ 0., -2.,  3.],
             [ 2.,  0.,  4.]], dtype=float32)
    """
    s = checks.as_points(src, "src")
    d = checks.as_points(dst, "dst")
    if s.shape[-2] != d.shape[-2]:
        raise ValueError(
            f"`src` and `dst` must have the same number of points, got {s.shape} and {d.shape}"
        )
    dtype = jnp.result_type(s, d)
    s, d = s.astype(dtype), d.astype(dtype)
    if weights is None:
        w = jnp.ones(s.shape[-2], dtype)
    else:
        w = checks.as_float(weights).astype(dtype)
        if w.ndim < 1 or w.shape[-1] != s.shape[-2]:
            raise ValueError(f"`weights` must be [..., {s.shape[-2]}], got shape {w.shape}")
    w = w[..., None]
    total = jnp.sum(w, axis=-2)
    safe_total = jnp.where(total > 0, total, 1.0)
    mean_s = jnp.sum(w * s, axis=-2) / safe_total
    mean_d = jnp.sum(w * d, axis=-2) / safe_total
    u = s - mean_s[..., None, :]
    v = d - mean_d[..., None, :]
    var = jnp.sum(w[..., 0] * jnp.sum(u * u, axis=-1), axis=-1)
    dot = jnp.sum(w[..., 0] * jnp.sum(u * v, axis=-1), axis=-1)
    cross = jnp.sum(w[..., 0] * (u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]), axis=-1)
    ok = var > 0
    safe_var = jnp.where(ok, var, 1.0)
    a = jnp.where(ok, dot / safe_var, 0.0)
    b = jnp.where(ok, cross / safe_var, 0.0)
    tx = mean_d[..., 0] - (a * mean_s[..., 0] - b * mean_s[..., 1])
    ty = mean_d[..., 1] - (b * mean_s[..., 0] + a * mean_s[..., 1])
    row0 = jnp.stack([a, -b, tx], axis=-1)
    row1 = jnp.stack([b, a, ty], axis=-1)
    return jnp.stack([row0, row1], axis=-2)
