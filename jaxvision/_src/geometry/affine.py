"""Affine maps of points and images, in OpenCV's conventions.

Conventions (shared by every function here and by ``jaxvision.face``):

- A matrix ``[..., 2, 3]`` ``M = [A | t]`` maps a point ``(x, y)`` to ``A @ (x, y) + t``;
  ``x`` is the column, ``y`` the row. Points are ``[..., P, 2]`` in ``(x, y)`` order.
- Pixel centres sit at integer coordinates: pixel ``image[i, j]`` is the point
  ``(x, y) = (j, i)``, so the image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. This is
  OpenCV's (and scikit-image's) convention; it is *not* that of
  ``torch.nn.functional.grid_sample(align_corners=False)`` or ``jax.image.resize``, which
  put the centre of pixel ``j`` at ``j + 0.5``. Converting: ``x_cv = x_half - 0.5``.
- ``warp_affine`` takes ``M`` as the *source -> destination* map, as ``cv2.warpAffine``
  without ``WARP_INVERSE_MAP``: ``out[i, j] = image(M^-1 (j, i))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.geometry import checks


@export("geometry.invert_affine")
def invert_affine(matrix: ArrayLike) -> Array:
    """Inverse of affine maps ``[..., 2, 3]``, as ``cv2.invertAffineTransform``.

    Args:
      matrix: ``[..., 2, 3]`` affine maps ``[A | t]``.

    Returns:
      ``[..., 2, 3]`` maps ``[A^-1 | -A^-1 t]`` (float32 for integer input). A singular
      ``A`` (determinant exactly 0) gives the zero matrix, as OpenCV does, with a finite
      (zero) gradient.

    Raises:
      ValueError: ``matrix`` is not ``[..., 2, 3]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import geometry
      >>> geometry.invert_affine(jnp.array([[2.0, 0.0, 4.0], [0.0, 0.5, 1.0]])) + 0.0
      Array([[ 0.5,  0. , -2. ],
             [ 0. ,  2. , -2. ]], dtype=float32)
    """
    m = checks.as_matrix(matrix)
    a, b, tx = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    c, d, ty = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    det = a * d - b * c
    singular = det == 0
    inv_det = jnp.where(singular, 0.0, 1.0 / jnp.where(singular, 1.0, det))
    ia, ib, ic, id_ = d * inv_det, -b * inv_det, -c * inv_det, a * inv_det
    row0 = jnp.stack([ia, ib, -(ia * tx + ib * ty)], axis=-1)
    row1 = jnp.stack([ic, id_, -(ic * tx + id_ * ty)], axis=-1)
    return jnp.stack([row0, row1], axis=-2)


@export("geometry.apply_affine")
def apply_affine(points: ArrayLike, matrix: ArrayLike) -> Array:
    """Maps points ``[..., P, 2]`` by affine maps ``[..., 2, 3]``, as ``cv2.transform``.

    Args:
      points: ``[..., P, 2]`` points ``(x, y)``.
      matrix: ``[..., 2, 3]`` maps; leading dimensions broadcast with ``points``'.

    Returns:
      ``[..., P, 2]`` points ``A @ p + t``.

    Raises:
      ValueError: ``points`` is not ``[..., P, 2]`` or ``matrix`` not ``[..., 2, 3]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import geometry
      >>> m = jnp.array([[0.0, -1.0, 10.0], [1.0, 0.0, 0.0]])  # 90 degrees, then x + 10
      >>> geometry.apply_affine(jnp.array([[1.0, 2.0]]), m)
      Array([[8., 1.]], dtype=float32)
    """
    p = checks.as_points(points, "points")
    m = checks.as_matrix(matrix)
    return jnp.einsum("...ij,...pj->...pi", m[..., :2], p) + m[..., None, :, 2]


def _sample_bilinear(image: Array, xs: Array, ys: Array, border_value: float) -> Array:
    """Bilinear samples of ``image [H, W, C]`` at ``(xs, ys) [h, w]``, constant outside.

    The image is padded by one pixel of ``border_value`` on every side and the neighbour
    indices clipped into the padding, so a neighbour outside the image reads the border
    value: the same result as OpenCV's ``BORDER_CONSTANT`` (and scipy's ``grid-constant``).
    """
    h, w, ch = image.shape
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), constant_values=border_value)
    x0, y0 = jnp.floor(xs), jnp.floor(ys)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    # +1 for the padding; clipping keeps far-away samples on the border ring (and clipping
    # before the int cast keeps huge positions from overflowing).
    xi = jnp.clip(x0, -2, w).astype(jnp.int32) + 1
    yi = jnp.clip(y0, -2, h).astype(jnp.int32) + 1
    x0, x1 = jnp.clip(xi, 0, w + 1), jnp.clip(xi + 1, 0, w + 1)
    y0, y1 = jnp.clip(yi, 0, h + 1), jnp.clip(yi + 1, 0, h + 1)
    flat = padded.reshape(-1, ch)

    def at(rows: Array, cols: Array) -> Array:
        index = (rows * (w + 2) + cols).reshape(-1)
        return jnp.take(flat, index, axis=0).reshape(*xs.shape, ch)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


@export("geometry.warp_affine")
def warp_affine(
    images: ArrayLike,
    matrix: ArrayLike,
    out_size: int | tuple[int, int],
    *,
    inverse: bool = False,
    border_value: float = 0.0,
) -> Array:
    """Warps images ``[..., H, W, C]`` by affine maps, as ``cv2.warpAffine`` (bilinear).

    ``out[..., i, j, :] = images(M^-1 (j, i))``, sampled bilinearly, neighbours outside the
    image reading ``border_value``: OpenCV's ``INTER_LINEAR`` with ``BORDER_CONSTANT``.

    Pixel-centre convention (OpenCV's, also scikit-image's): pixel ``[i, j]`` (row ``i``,
    column ``j``) is centred at the point ``(x, y) = (j, i)``, so an ``H x W`` image covers
    ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` and the matrix acts on ``(x, y, 1)``, ``x`` first.
    ``torch.nn.functional.grid_sample(align_corners=False)``, PIL and ``jax.image.resize``
    instead centre pixel ``j`` at ``j + 0.5``: conjugate ``M`` by a half-pixel shift
    (``x_cv = x_half - 0.5``) to use their coordinates. A sample at ``x`` in ``(-1, 0)``
    blends column 0 with the border value; beyond one pixel outside it is the border value.
    Differentiable in ``images`` and in ``matrix``; works under ``jit`` (with ``out_size``
    static) and ``vmap``.

    Deviation from OpenCV: OpenCV rounds sampling positions to 1/32 pixel
    (``INTER_BITS = 5``) and uint8 output to integers; here positions are exact and the
    output is floating point, so the two agree exactly only where the positions fall on
    OpenCV's 1/32 grid (within about ``|grad image| / 64`` elsewhere).

    Args:
      images: ``[..., H, W, C]`` images (channels last).
      matrix: ``[..., 2, 3]`` source -> destination maps (destination -> source with
        ``inverse=True``, OpenCV's ``WARP_INVERSE_MAP``); leading dimensions broadcast with
        those of ``images``.
      out_size: output ``(height, width)``, or one int for a square. Note the order:
        OpenCV's ``dsize`` is ``(width, height)``.
      inverse: ``matrix`` already maps destination pixels to source positions.
      border_value: the value read outside the source image.

    Returns:
      ``[..., height, width, C]`` warped images, in the images' floating dtype (float32 for
      integer images). A singular ``matrix`` has the zero inverse (as in OpenCV), so every
      output pixel reads source pixel ``(0, 0)``.

    Raises:
      ValueError: ``images`` has fewer than 3 dimensions, ``matrix`` is not ``[..., 2, 3]``,
        the leading dimensions do not broadcast, or ``out_size`` is not positive.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import geometry
      >>> image = jnp.arange(9.0).reshape(3, 3, 1)
      >>> shift = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]])  # content moves right
      >>> geometry.warp_affine(image, shift, (3, 3))[..., 0]
      Array([[0. , 0.5, 1.5],
             [1.5, 3.5, 4.5],
             [3. , 6.5, 7.5]], dtype=float32)
    """
    x = checks.as_float(images)
    if x.ndim < 3:
        raise ValueError(f"`images` must be [..., H, W, C], got shape {x.shape}")
    m = checks.as_matrix(matrix).astype(x.dtype)
    height, width = checks.check_size(out_size)
    try:
        batch = np.broadcast_shapes(x.shape[:-3], m.shape[:-2])
    except ValueError:
        raise ValueError(
            f"leading dimensions of `images` {x.shape[:-3]} and `matrix` {m.shape[:-2]} "
            "do not broadcast"
        ) from None
    inv = m if inverse else invert_affine(m)
    x = jnp.broadcast_to(x, batch + x.shape[-3:]).reshape(-1, *x.shape[-3:])
    inv = jnp.broadcast_to(inv, batch + (2, 3)).reshape(-1, 2, 3)
    cols, rows = jnp.meshgrid(
        jnp.arange(width, dtype=x.dtype), jnp.arange(height, dtype=x.dtype), indexing="xy"
    )

    def one(image: Array, a: Array) -> Array:
        xs = a[0, 0] * cols + a[0, 1] * rows + a[0, 2]
        ys = a[1, 0] * cols + a[1, 1] * rows + a[1, 2]
        return _sample_bilinear(image, xs, ys, border_value)

    out = jax.vmap(one)(x, inv)
    return out.reshape(*batch, height, width, x.shape[-1])
