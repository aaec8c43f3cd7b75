"""Top-down crop transforms: person box -> affine matrix -> crop, keypoints to / from it.

The matrices act on the keypoint convention of ``jaxvision.keypoints`` (continuous pixel
coordinates, pixel ``i`` covering ``[i, i + 1)``); :func:`crop_images` converts them to
the OpenCV pixel-centre convention of ``geometry.warp_affine``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.geometry.affine import apply_affine, invert_affine, warp_affine
from jaxvision._src.keypoints import checks


@export("keypoints.crop_matrix")
def crop_matrix(
    boxes: ArrayLike,
    out_size: tuple[int, int],
    *,
    padding: float = 1.25,
    scale: ArrayLike | None = None,
    rotation: ArrayLike | None = None,
) -> Array:
    """Affine maps from image to crop coordinates for top-down pose estimation.

    The box is enlarged to the crop's aspect ratio (the shorter side grows), then by
    ``padding`` (mmpose / Xiao et al. use 1.25) and ``scale``, rotated by ``rotation``
    degrees (counter-clockwise in the image, about the box centre) and mapped onto
    ``[0, W) x [0, H)`` of the crop, the box centre on the crop centre.

    Args:
      boxes: ``[..., 4]`` person boxes ``xywh`` in image pixels.
      out_size: crop ``(H, W)``, e.g. ``(256, 192)``.
      padding: enlargement of every box.
      scale: optional ``[...]`` extra enlargement (augmentation), 1 = none.
      rotation: optional ``[...]`` rotation in degrees (augmentation).

    Returns:
      ``[..., 2, 3]`` matrices ``image -> crop`` on continuous pixel coordinates.

    Examples:
      >>> import numpy as np
      >>> m = crop_matrix(np.array([10.0, 20.0, 30.0, 40.0]), (64, 48), padding=1.0)
      >>> np.asarray(m) + 0.0
      array([[  1.6,   0. , -16. ],
             [  0. ,   1.6, -32. ]], dtype=float32)
    """
    b = checks.as_float(boxes, "boxes")
    if b.ndim < 1 or b.shape[-1] != 4:
        raise ValueError(f"`boxes` must be [..., 4] xywh, got shape {b.shape}")
    out_h, out_w = checks.check_size(out_size, "out_size")
    x, y, w, h = (b[..., i] for i in range(4))
    cx, cy = x + w / 2, y + h / 2
    aspect = out_w / out_h
    w, h = jnp.maximum(w, h * aspect), jnp.maximum(h, w / aspect)
    w = w * padding * (1.0 if scale is None else jnp.asarray(scale, b.dtype))
    s = checks.safe_div(jnp.asarray(out_w, b.dtype), w)  # crop px per image px
    theta = jnp.zeros_like(s) if rotation is None else jnp.deg2rad(jnp.asarray(rotation, b.dtype))
    # x' = s R (p - c) + crop centre, R rotating counter-clockwise on screen (y down).
    cos, sin = jnp.cos(theta) * s, jnp.sin(theta) * s
    a = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)
    t = jnp.stack(
        [
            out_w / 2 - (a[..., 0, 0] * cx + a[..., 0, 1] * cy),
            out_h / 2 - (a[..., 1, 0] * cx + a[..., 1, 1] * cy),
        ],
        -1,
    )
    return jnp.concatenate([a, t[..., None]], axis=-1)


@export("keypoints.crop_images")
def crop_images(images: ArrayLike, matrix: ArrayLike, out_size: tuple[int, int]) -> Array:
    """Crops ``images [..., H, W, C]`` with :func:`crop_matrix` maps (bilinear, zero border).

    Args:
      images: ``[..., H, W, C]``.
      matrix: ``[..., 2, 3]`` image -> crop maps on continuous pixel coordinates.
      out_size: crop ``(H, W)``.

    Returns:
      ``[..., out_H, out_W, C]`` crops, by ``geometry.warp_affine`` after the half-pixel
      conjugation to OpenCV's pixel centres (``x_cv = x - 0.5``).
    """
    m = checks.as_float(matrix, "matrix")
    if m.shape[-2:] != (2, 3):
        raise ValueError(f"`matrix` must be [..., 2, 3], got shape {m.shape}")
    # x'_cv + 0.5 = A (x_cv + 0.5) + t  =>  t_cv = t + 0.5 A 1 - 0.5.
    t_cv = m[..., 2] + 0.5 * (m[..., 0] + m[..., 1]) - 0.5
    m_cv = jnp.concatenate([m[..., :2], t_cv[..., None]], axis=-1)
    return warp_affine(images, m_cv, checks.check_size(out_size, "out_size"))


@export("keypoints.keypoints_to_crop")
def keypoints_to_crop(keypoints: ArrayLike, matrix: ArrayLike) -> Array:
    """Maps ``[..., K, 2]`` image keypoints into the crop of ``matrix [..., 2, 3]``."""
    return apply_affine(checks.as_keypoints(keypoints), matrix)


@export("keypoints.keypoints_from_crop")
def keypoints_from_crop(keypoints: ArrayLike, matrix: ArrayLike) -> Array:
    """Maps ``[..., K, 2]`` crop keypoints back to the image (the inverse of ``matrix``)."""
    return apply_affine(checks.as_keypoints(keypoints), invert_affine(matrix))
