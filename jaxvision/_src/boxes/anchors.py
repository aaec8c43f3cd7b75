"""Multi-scale grid anchors for single-shot detectors (SSD, RetinaFace, SCRFD).

Anchors are square boxes centred on the cells of one feature map per stride. The order is
the one the detection heads flatten their outputs in: level by level (smallest stride
first), then rows, then columns, then the anchor sizes of that level, so that anchor ``a``
and the ``a``-th prediction of ``reshape(head_output, [B, -1, ...])`` concatenated over
levels describe the same box.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import Array

from jaxvision._src.boxes import checks
from jaxvision._src.boxes.formats import from_xyxy
from jaxvision._src.export import export

# The RetinaFace layout of biubug6's PyTorch port and of SCRFD: two square anchors per cell
# on strides 8, 16 and 32 (16,800 anchors at 640 x 640).
RETINAFACE_STRIDES: tuple[int, ...] = (8, 16, 32)
RETINAFACE_ANCHOR_SIZES: tuple[tuple[float, ...], ...] = (
    (16.0, 32.0),
    (64.0, 128.0),
    (256.0, 512.0),
)


def _check_image_size(image_size: object, largest_stride: int) -> tuple[int, int]:
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    if (
        not isinstance(image_size, Sequence)
        or len(image_size) != 2
        or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in image_size)
        or min(image_size) <= 0
    ):
        raise ValueError(
            f"`image_size` must be a positive int or (height, width), got {image_size!r}"
        )
    h, w = int(image_size[0]), int(image_size[1])
    if h % largest_stride or w % largest_stride:
        raise ValueError(
            f"`image_size` (height, width) = ({h}, {w}) must be divisible by the largest "
            f"stride {largest_stride}"
        )
    return h, w


def check_strides_and_sizes(
    strides: Sequence[int], sizes: Sequence[Sequence[float]]
) -> tuple[tuple[int, ...], tuple[tuple[float, ...], ...]]:
    """Validates the per-level ``strides`` and anchor ``sizes``; returns them as tuples."""
    if (
        not isinstance(strides, Sequence)
        or not strides
        or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in strides
        )
    ):
        raise ValueError(
            f"`strides` must be a non-empty sequence of positive ints, got {strides!r}"
        )
    if not isinstance(sizes, Sequence) or len(sizes) != len(strides):
        raise ValueError(
            f"`sizes` must hold one sequence of anchor sizes per stride ({len(strides)}), "
            f"got {sizes!r}"
        )
    out = []
    for level in sizes:
        if (
            not isinstance(level, Sequence)
            or not level
            or not all(
                isinstance(s, numbers.Real) and not isinstance(s, bool) and s > 0 for s in level
            )
        ):
            raise ValueError(
                f"`sizes` must hold non-empty sequences of positive sizes, got {sizes!r}"
            )
        out.append(tuple(float(s) for s in level))
    return tuple(int(s) for s in strides), tuple(out)


@export("boxes.grid_anchors")
def grid_anchors(
    image_size: int | tuple[int, int],
    *,
    strides: Sequence[int] = RETINAFACE_STRIDES,
    sizes: Sequence[Sequence[float]] = RETINAFACE_ANCHOR_SIZES,
    fmt: str = "xyxy",
) -> Array:
    """Square anchors centred on every cell of one feature map per stride, in pixels.

    Level ``l`` has a ``(H / strides[l]) x (W / strides[l])`` grid; the cell in row ``i``,
    column ``j`` holds one square anchor of side ``s`` for each ``s`` in ``sizes[l]``,
    centred at ``((j + 0.5) * stride, (i + 0.5) * stride)`` (the centre convention of
    SSD and of RetinaFace's ``PriorBox``; torchvision's ``AnchorGenerator`` centres at
    ``j * stride`` instead). Anchors are not clipped to the image. The defaults are the
    RetinaFace layout (16,800 anchors at 640 x 640); SCRFD uses the same one.

    Args:
      image_size: ``(height, width)`` in pixels, or one int for a square image. Both must
        be divisible by the largest stride, so that every level's grid is exact.
      strides: the stride of each level, e.g. ``(8, 16, 32)``.
      sizes: per level, the side lengths of its anchors in pixels.
      fmt: format of the result: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
      ``[A, 4]`` float32 anchors, ``A = sum_l (H / s_l) (W / s_l) len(sizes[l])``, in the
      order level, row, column, size.

    Raises:
      ValueError: the image size is not divisible by the largest stride, or the strides,
        sizes or ``fmt`` are malformed.

    References:
      Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016; Deng et al.,
      "RetinaFace: Single-shot Multi-level Face Localisation in the Wild", CVPR 2020.

    Examples:
      >>> grid_anchors(64).shape
      (168, 4)
      >>> grid_anchors(32, strides=(16, 32), sizes=((8,), (32,)), fmt="cxcywh")
      Array([[ 8.,  8.,  8.,  8.],
             [24.,  8.,  8.,  8.],
             [ 8., 24.,  8.,  8.],
             [24., 24.,  8.,  8.],
             [16., 16., 32., 32.]], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    strides, sizes = check_strides_and_sizes(strides, sizes)
    h, w = _check_image_size(image_size, max(strides))
    levels = []
    for stride, level_sizes in zip(strides, sizes, strict=True):
        ys = (np.arange(h // stride, dtype=np.float64) + 0.5) * stride
        xs = (np.arange(w // stride, dtype=np.float64) + 0.5) * stride
        cy, cx, side = np.meshgrid(ys, xs, np.asarray(level_sizes), indexing="ij")
        levels.append(np.stack([cx, cy, side], axis=-1).reshape(-1, 3))
    cx, cy, side = np.concatenate(levels).T
    half = side / 2
    xyxy = [jnp.asarray(v, jnp.float32) for v in (cx - half, cy - half, cx + half, cy + half)]
    return from_xyxy(*xyxy, fmt)
