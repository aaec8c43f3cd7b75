"""The SSD / RetinaFace box coder: boxes as centre offsets and log-scales of their anchors.

``encode(b, a) = ((cx_b - cx_a) / (v0 w_a), (cy_b - cy_a) / (v0 h_a), log(w_b / w_a) / v1,
log(h_b / h_a) / v1)`` with the "variances" ``(v0, v1) = (0.1, 0.2)`` of SSD, RetinaFace
and its PyTorch port; ``decode`` is its exact inverse. Faster R-CNN's coder is the same
with weights ``(10, 10, 5, 5)`` = ``1 / (0.1, 0.1, 0.2, 0.2)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks
from jaxvision._src.boxes.formats import from_xyxy, to_xyxy
from jaxvision._src.export import export

DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


def check_variances(variances: object) -> tuple[float, float]:
    """Returns ``variances`` as two positive floats, or raises ValueError naming it."""
    if (
        not isinstance(variances, Sequence)
        or len(variances) != 2
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in variances
        )
    ):
        raise ValueError(f"`variances` must be two positive numbers, got {variances!r}")
    return float(variances[0]), float(variances[1])


def anchor_centres(anchors: Array, fmt: str) -> tuple[Array, Array, Array, Array]:
    """``anchors: [..., 4]`` in ``fmt`` -> ``cx, cy, w, h``, each ``[...]``."""
    x1, y1, x2, y2 = to_xyxy(anchors, fmt)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def _broadcastable(boxes: Array, anchors: Array, names: tuple[str, str]) -> None:
    try:
        jnp.broadcast_shapes(boxes.shape, anchors.shape)
    except ValueError:
        raise ValueError(
            f"`{names[0]}` {boxes.shape} and `{names[1]}` {anchors.shape} must broadcast"
        ) from None


@export("boxes.encode_boxes")
def encode_boxes(
    boxes: ArrayLike,
    anchors: ArrayLike,
    *,
    variances: Sequence[float] = DEFAULT_VARIANCES,
    fmt: str = "xyxy",
) -> Array:
    """Encodes boxes as regression targets relative to their anchors (SSD / RetinaFace).

    ``t = ((cx - cx_a) / (v0 w_a), (cy - cy_a) / (v0 h_a), log(w / w_a) / v1,
    log(h / h_a) / v1)``. A box of zero width or height gives ``-inf`` in its log terms
    (the loss only sees boxes matched to anchors, which have positive size).

    Args:
      boxes: ``[..., 4]`` boxes in format ``fmt``.
      anchors: ``[..., 4]`` anchors in format ``fmt``, broadcastable against ``boxes``,
        with positive width and height.
      variances: ``(v0, v1)``, the scales of the centre and of the size terms; default
        ``(0.1, 0.2)`` as RetinaFace and SSD.
      fmt: format of ``boxes`` and ``anchors``: ``"xyxy"`` (default), ``"xywh"``,
        ``"cxcywh"``.

    Returns:
      ``[..., 4]`` deltas ``(dx, dy, dw, dh)`` in at least float32.

    References:
      Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016, eq. 2.

    Examples:
      >>> encode_boxes(jnp.array([12.0, 8.0, 28.0, 40.0]), jnp.array([0.0, 0.0, 32.0, 32.0]))
      Array([ 1.25    ,  2.5     , -3.465736,  0.      ], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    v0, v1 = check_variances(variances)
    b = checks.as_boxes(boxes, "boxes")
    a = checks.as_boxes(anchors, "anchors")
    _broadcastable(b, a, ("boxes", "anchors"))
    dtype = checks.compute_dtype(b, a)
    bx, by, bw, bh = anchor_centres(b.astype(dtype), fmt)
    ax, ay, aw, ah = anchor_centres(a.astype(dtype), fmt)
    return jnp.stack(
        [
            (bx - ax) / (v0 * aw),
            (by - ay) / (v0 * ah),
            jnp.log(bw / aw) / v1,
            jnp.log(bh / ah) / v1,
        ],
        axis=-1,
    )


@export("boxes.decode_boxes")
def decode_boxes(
    deltas: ArrayLike,
    anchors: ArrayLike,
    *,
    variances: Sequence[float] = DEFAULT_VARIANCES,
    fmt: str = "xyxy",
) -> Array:
    """Decodes regression outputs into boxes: the inverse of :func:`encode_boxes`.

    ``cx = cx_a + v0 dx w_a``, ``w = w_a exp(v1 dw)`` (and the same for ``y``, ``h``).
    No clamp is applied to ``dw``, ``dh`` (RetinaFace's port applies none either;
    torchvision's clamps at ``log(1000 / 16)``): a huge ``dw`` gives an infinite box.

    Args:
      deltas: ``[..., 4]`` ``(dx, dy, dw, dh)``.
      anchors: ``[..., 4]`` anchors in format ``fmt``, broadcastable against ``deltas``.
      variances: ``(v0, v1)`` as in :func:`encode_boxes`.
      fmt: format of ``anchors`` and of the result.

    Returns:
      ``[..., 4]`` boxes in format ``fmt``, in at least float32.

    References:
      Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016.

    Examples:
      >>> decode_boxes(jnp.array([1.25, 2.5, -3.465736, 0.0]), jnp.array([0.0, 0.0, 32.0, 32.0]))
      Array([12.,  8., 28., 40.], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    v0, v1 = check_variances(variances)
    d = checks.as_boxes(deltas, "deltas")
    a = checks.as_boxes(anchors, "anchors")
    _broadcastable(d, a, ("deltas", "anchors"))
    dtype = checks.compute_dtype(d, a)
    d = d.astype(dtype)
    ax, ay, aw, ah = anchor_centres(a.astype(dtype), fmt)
    cx = ax + d[..., 0] * v0 * aw
    cy = ay + d[..., 1] * v0 * ah
    half_w = aw * jnp.exp(d[..., 2] * v1) / 2
    half_h = ah * jnp.exp(d[..., 3] * v1) / 2
    return from_xyxy(cx - half_w, cy - half_h, cx + half_w, cy + half_h, fmt)
