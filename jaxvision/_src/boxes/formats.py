"""Box formats (``xyxy``, ``xywh``, ``cxcywh``) and box areas.

The one conversion between formats: :func:`to_xyxy` / :func:`from_xyxy` serve the jitted
functions and, through :func:`convert_host`, the NumPy code of the data pipelines.
"""

from __future__ import annotations

from types import ModuleType

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks
from jaxvision._src.export import export


def to_xyxy(boxes: Array, fmt: str) -> tuple[Array, Array, Array, Array]:
    """Splits ``boxes: [..., 4]`` of format ``fmt`` into ``x1, y1, x2, y2``, each ``[...]``."""
    a, b, c, d = (boxes[..., k] for k in range(4))
    if fmt == "xyxy":
        return a, b, c, d
    if fmt == "xywh":
        return a, b, a + c, b + d
    half_w, half_h = c / 2, d / 2
    return a - half_w, b - half_h, a + half_w, b + half_h


def from_xyxy(
    x1: Array, y1: Array, x2: Array, y2: Array, fmt: str, *, xp: ModuleType = jnp
) -> Array:
    """Stacks corner coordinates ``[...]`` into boxes ``[..., 4]`` of format ``fmt``
    (with ``xp.stack``: ``jnp`` by default, ``np`` for host arrays)."""
    if fmt == "xyxy":
        parts = (x1, y1, x2, y2)
    elif fmt == "xywh":
        parts = (x1, y1, x2 - x1, y2 - y1)
    else:
        parts = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return xp.stack(parts, axis=-1)


def convert_host(boxes: np.ndarray, in_fmt: str, out_fmt: str) -> np.ndarray:
    """:func:`box_convert` for host NumPy arrays (input pipelines), in their own dtype."""
    boxes = np.asarray(boxes)
    return from_xyxy(*to_xyxy(boxes, checks.check_fmt(in_fmt)), checks.check_fmt(out_fmt), xp=np)


@export("boxes.box_convert")
def box_convert(boxes: ArrayLike, in_fmt: str, out_fmt: str) -> Array:
    """Converts boxes between the ``xyxy``, ``xywh`` and ``cxcywh`` formats.

    ``xyxy`` is ``(x1, y1, x2, y2)`` (top-left and bottom-right corners), ``xywh`` is
    ``(x1, y1, w, h)`` (COCO annotations), ``cxcywh`` is ``(cx, cy, w, h)`` (DETR).
    Same formats and argument order as ``torchvision.ops.box_convert``. Boxes with a
    negative width or height are converted as they are (no reordering of corners).

    Args:
      boxes: ``[..., 4]`` boxes in ``in_fmt``. Integer input is promoted to float32;
        floating input keeps its dtype (bf16 included).
      in_fmt: format of ``boxes``: ``"xyxy"``, ``"xywh"`` or ``"cxcywh"``.
      out_fmt: format of the result.

    Returns:
      ``[..., 4]`` boxes in ``out_fmt``.

    Raises:
      ValueError: a format is unknown, or the last dimension of ``boxes`` is not 4.

    Examples:
      >>> box_convert(jnp.array([10.0, 20.0, 4.0, 6.0]), "cxcywh", "xyxy")
      Array([ 8., 17., 12., 23.], dtype=float32)

    Examples:
      >>> box_convert(jnp.array([[2.0, 1, 4, 2]]), "cxcywh", "xyxy")
      Array([[0., 0., 4., 2.]], dtype=float32)
    """
    in_fmt = checks.check_fmt(in_fmt, "in_fmt")
    out_fmt = checks.check_fmt(out_fmt, "out_fmt")
    boxes = checks.as_boxes(boxes, "boxes")
    boxes = boxes.astype(checks.output_dtype(boxes))
    if in_fmt == out_fmt:
        return boxes
    return from_xyxy(*to_xyxy(boxes, in_fmt), out_fmt)


@export("boxes.box_area")
def box_area(boxes: ArrayLike, *, fmt: str = "xyxy") -> Array:
    """Area of each box, ``max(w, 0) * max(h, 0)``.

    Convention: a box with ``x2 < x1`` or ``y2 < y1`` is empty and has area 0, the same
    convention the IoU family uses; ``torchvision.ops.box_area`` returns the signed
    product ``(x2 - x1) * (y2 - y1)`` instead, which is positive when both sides are
    inverted.

    Args:
      boxes: ``[..., 4]`` boxes in format ``fmt``; integers are promoted to float32.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
      ``[...]`` areas, in the boxes' floating dtype.

    Raises:
      ValueError: ``fmt`` is unknown or the last dimension of ``boxes`` is not 4.

    Examples:
      >>> box_area(jnp.array([[0.0, 0, 4, 2], [1, 1, 1, 5]]))
      Array([8., 0.], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    boxes = checks.as_boxes(boxes, "boxes")
    out = checks.output_dtype(boxes)
    x1, y1, x2, y2 = to_xyxy(boxes.astype(checks.compute_dtype(boxes)), fmt)
    area = jnp.maximum(x2 - x1, 0) * jnp.maximum(y2 - y1, 0)
    return area.astype(out)
