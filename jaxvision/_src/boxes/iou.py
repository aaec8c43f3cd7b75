"""Pairwise IoU family: IoU, GIoU, DIoU and CIoU between two sets of boxes.

Shared conventions (see ``docs/boxes.md``):

- ``boxes1: [..., N, 4]`` and ``boxes2: [..., M, 4]`` with equal batch dimensions give
  ``[..., N, M]``; ``fmt`` is ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
- Integer input is promoted to float32; bf16/fp16 input is computed in float32 and the
  result returned in the input dtype.
- ``eps`` (default 0.0, exact ratios as torchvision) is added to every denominator.
- Degenerate boxes give finite values and finite gradients: a box with ``x2 < x1`` or
  ``y2 < y1`` is empty; a ratio whose denominator is exactly 0 is 0. Hence IoU of two
  empty boxes is 0 (torchvision: NaN), GIoU's penalty is 0 when the enclosing box has
  zero area, DIoU's when both centres coincide on a point.
- NaN coordinates give NaN only in the rows/columns of the boxes that hold them.
- Coordinates past 2^60 (float32 areas overflow from about 1.8e19) are scaled by one
  power of two per call first, so values stay defined (``eps`` is then relative to the
  scaled boxes).
"""

from __future__ import annotations

from collections.abc import Callable

from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks, terms
from jaxvision._src.export import export


def _pairwise(
    formula: Callable[[terms.Corners, terms.Corners, float], Array],
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    fmt: str,
    eps: float,
) -> Array:
    fmt = checks.check_fmt(fmt)
    eps = checks.check_float(eps, "eps")
    b1 = checks.as_boxes(boxes1, "boxes1")
    b2 = checks.as_boxes(boxes2, "boxes2")
    for name, b in (("boxes1", b1), ("boxes2", b2)):
        if b.ndim < 2:
            raise ValueError(f"`{name}` must have shape [..., N, 4], got shape {b.shape}")
    if b1.shape[:-2] != b2.shape[:-2]:
        raise ValueError(
            "`boxes1` and `boxes2` must have the same batch dimensions, got shapes "
            f"{b1.shape} and {b2.shape}"
        )
    dtype = checks.compute_dtype(b1, b2)
    b1c, b2c = b1.astype(dtype), b2.astype(dtype)
    scale = terms.overflow_scale(b1c, b2c)  # 1 unless coordinates pass 2^60
    a = terms.corners(b1c[..., :, None, :] * scale, fmt)
    b = terms.corners(b2c[..., None, :, :] * scale, fmt)
    return formula(a, b, eps).astype(checks.output_dtype(b1, b2))


def _giou(a: terms.Corners, b: terms.Corners, eps: float) -> Array:
    return terms.iou(a, b, eps) - terms.giou_penalty(a, b, eps)


def _diou(a: terms.Corners, b: terms.Corners, eps: float) -> Array:
    return terms.iou(a, b, eps) - terms.diou_penalty(a, b, eps)


def _ciou(a: terms.Corners, b: terms.Corners, eps: float) -> Array:
    iou = terms.iou(a, b, eps)
    v = terms.aspect_v(a, b)
    return iou - terms.diou_penalty(a, b, eps) - terms.ciou_alpha(v, iou, eps) * v


@export("boxes.box_iou")
def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, fmt: str = "xyxy", eps: float = 0.0) -> Array:
    """Pairwise intersection over union, ``IoU = I / (U + eps)``, in ``[0, 1]``.

    Args:
      boxes1: ``[..., N, 4]`` boxes in format ``fmt``.
      boxes2: ``[..., M, 4]`` boxes, same batch dimensions ``...`` as ``boxes1``.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
      eps: float >= 0 added to the union. Default 0.0: exact, as ``torchvision.ops.box_iou``.

    Returns:
      ``[..., N, M]`` IoU. Two empty boxes (union 0) give 0 where torchvision gives NaN
      (vision #3405); gradients are finite everywhere.

    Raises:
      ValueError: a last dimension is not 4, the batch dimensions differ, ``fmt`` is
        unknown, or ``eps`` is negative.
      TypeError: ``eps`` is not a float.

    Examples:
      >>> box_iou(jnp.array([[0.0, 0, 4, 4]]), jnp.array([[1.0, 1, 3, 3], [0, 0, 4, 4]]))
      Array([[0.25, 1.  ]], dtype=float32)
    """
    return _pairwise(terms.iou, boxes1, boxes2, fmt, eps)


@export("boxes.generalized_box_iou")
def generalized_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, fmt: str = "xyxy", eps: float = 0.0
) -> Array:
    """Pairwise generalized IoU, ``GIoU = IoU - (C - U) / C``, in ``[-1, 1]``.

    ``C`` is the area of the smallest box enclosing both. Reference: Rezatofighi et al.,
    "Generalized Intersection over Union", CVPR 2019.

    Args:
      boxes1: ``[..., N, 4]`` boxes in format ``fmt``.
      boxes2: ``[..., M, 4]`` boxes, same batch dimensions as ``boxes1``.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
      eps: float >= 0 added to ``U`` and ``C``. Default 0.0 (as torchvision).

    Returns:
      ``[..., N, M]`` GIoU. Inverted boxes (``x2 < x1``) are empty rather than an error
      (DETR's version asserts and stops training); where ``C`` is 0 the penalty is 0, so
      GIoU equals IoU there. Gradients are finite everywhere.

    Raises:
      ValueError, TypeError: as :func:`box_iou`.
    """
    return _pairwise(_giou, boxes1, boxes2, fmt, eps)


@export("boxes.distance_box_iou")
def distance_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, fmt: str = "xyxy", eps: float = 0.0
) -> Array:
    """Pairwise distance IoU, ``DIoU = IoU - rho^2 / c^2``, in ``[-1, 1]``.

    ``rho`` is the distance between the box centres and ``c`` the diagonal of the
    smallest enclosing box. Reference: Zheng et al., "Distance-IoU Loss", AAAI 2020.

    Args:
      boxes1: ``[..., N, 4]`` boxes in format ``fmt``.
      boxes2: ``[..., M, 4]`` boxes, same batch dimensions as ``boxes1``.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
      eps: float >= 0 added to ``U`` and ``c^2``. Default 0.0 (torchvision uses 1e-7).

    Returns:
      ``[..., N, M]`` DIoU. Where ``c^2`` is 0 (both boxes the same point) the distance
      penalty is 0. Gradients are finite everywhere.

    Raises:
      ValueError, TypeError: as :func:`box_iou`.
    """
    return _pairwise(_diou, boxes1, boxes2, fmt, eps)


@export("boxes.complete_box_iou")
def complete_box_iou(
    boxes1: ArrayLike, boxes2: ArrayLike, *, fmt: str = "xyxy", eps: float = 0.0
) -> Array:
    """Pairwise complete IoU, ``CIoU = DIoU - alpha * v``.

    ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` measures aspect-ratio
    consistency and ``alpha = v / ((1 - IoU) + v)``. Reference: Zheng et al.,
    "Distance-IoU Loss", AAAI 2020.

    Convention: ``atan(w / h)`` is evaluated as ``atan2(w, h)``, so a zero-height box has
    angle pi/2 (finite value and gradient, where the peers' ``w / h`` gives NaN
    gradients); ``v`` is 0 when either box is a point (zero width and height).
    ``alpha`` is held constant under differentiation, as in the authors' code and
    torchvision; ``alpha`` is 0 where its denominator is 0.

    Args:
      boxes1: ``[..., N, 4]`` boxes in format ``fmt``.
      boxes2: ``[..., M, 4]`` boxes, same batch dimensions as ``boxes1``.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
      eps: float >= 0 added to every denominator. Default 0.0 (torchvision uses 1e-7).

    Returns:
      ``[..., N, M]`` CIoU, finite with finite gradients for degenerate boxes.

    Raises:
      ValueError, TypeError: as :func:`box_iou`.
    """
    return _pairwise(_ciou, boxes1, boxes2, fmt, eps)
