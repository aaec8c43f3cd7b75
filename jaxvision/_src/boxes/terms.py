"""Building blocks of the IoU family on broadcastable corner coordinates.

Everything here is element-wise, so the pairwise functions (``[..., N, 1]`` against
``[..., 1, M]``) and the aligned losses (``[...]`` against ``[...]``) share one
implementation and XLA fuses each formula into a single pass without materialising
``[..., N, M, 4]`` intermediates.

Degenerate input is handled once, here: widths and heights are clamped at 0 (a box with
``x2 < x1`` is empty), every ratio goes through :func:`safe_div`, which returns 0 where the
denominator is exactly 0 and keeps gradients finite there (the "double where": the
untaken branch never sees a zero denominator).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from jaxvision._src.boxes.formats import to_xyxy


class Corners(NamedTuple):
    """Corner coordinates of boxes; each field has the same (broadcastable) shape."""

    x1: Array
    y1: Array
    x2: Array
    y2: Array

    @property
    def w(self) -> Array:
        return jnp.maximum(self.x2 - self.x1, 0)

    @property
    def h(self) -> Array:
        return jnp.maximum(self.y2 - self.y1, 0)

    @property
    def area(self) -> Array:
        return self.w * self.h


def corners(boxes: Array, fmt: str) -> Corners:
    """``boxes: [..., 4]`` in ``fmt`` -> :class:`Corners` with fields of shape ``[...]``."""
    return Corners(*to_xyxy(boxes, fmt))


def overflow_scale(*boxes: Array) -> Array:
    """A power of two ``2^-k`` (``k >= 0``) that brings every finite coordinate below 2^60.

    Products of coordinates overflow float32 from about 1.8e19; the IoU family is
    scale-free, so multiplying the boxes by this factor (exact: a power of two) keeps
    areas finite without changing any value computed below 2^60. It is 1 for ordinary
    input and carries no gradient.
    """
    big = jnp.zeros((), jnp.float32)
    for b in boxes:
        finite = jnp.where(jnp.isfinite(b), jnp.abs(b), 0)
        big = jnp.maximum(big, jnp.max(finite, initial=0).astype(jnp.float32))
    _, exponent = jnp.frexp(jax.lax.stop_gradient(big))
    k = jnp.maximum(exponent - 60, 0)
    return jnp.ldexp(jnp.ones((), boxes[0].dtype), -k)


def safe_div(num: Array, den: Array) -> Array:
    """``num / den``, and 0 where ``den == 0``, with finite gradients everywhere.

    NaN in ``den`` is not masked: it propagates to the result of that element only.
    """
    zero = den == 0
    return jnp.where(zero, 0, num / jnp.where(zero, 1, den))


def ratio(num: Array, den: Array, eps: float) -> Array:
    """``num / (den + eps)`` for ``0 <= num <= den``; 0 with gradient 0 where ``den == 0``.

    Where ``den`` is exactly 0 (the union of two empty boxes, the enclosing box of two
    coinciding zero-width boxes) ``num`` is 0 too and the ratio stays 0 whichever single
    coordinate moves, so its gradient is 0; ``num / eps`` would give ``1 / eps`` (5e6 for
    1e-7, infinite once cast to float16).
    """
    empty = den == 0
    return jnp.where(empty, 0, safe_div(num, jnp.where(empty, 1, den) + eps))


def safe_pow(x: Array, power: float) -> Array:
    """``max(x, 0) ** power`` with value and gradient 0 at 0, even for ``power < 1``.

    Clamping at 0 removes tiny negative rounding errors of penalty terms, which would
    otherwise give NaN for a fractional power; NaN still propagates.
    """
    if power == 1.0:
        return x
    x = jnp.maximum(x, 0)
    zero = x == 0
    return jnp.where(zero, 0, jnp.where(zero, 1, x) ** power)


def intersection_union(a: Corners, b: Corners) -> tuple[Array, Array]:
    """Intersection and union areas of ``a`` and ``b`` (union >= intersection >= 0)."""
    iw = jnp.maximum(jnp.minimum(a.x2, b.x2) - jnp.maximum(a.x1, b.x1), 0)
    ih = jnp.maximum(jnp.minimum(a.y2, b.y2) - jnp.maximum(a.y1, b.y1), 0)
    inter = iw * ih
    return inter, a.area + b.area - inter


def enclosing_wh(a: Corners, b: Corners) -> tuple[Array, Array]:
    """Width and height of the smallest axis-aligned box enclosing ``a`` and ``b``."""
    cw = jnp.maximum(jnp.maximum(a.x2, b.x2) - jnp.minimum(a.x1, b.x1), 0)
    ch = jnp.maximum(jnp.maximum(a.y2, b.y2) - jnp.minimum(a.y1, b.y1), 0)
    return cw, ch


def centre_offset(a: Corners, b: Corners) -> tuple[Array, Array]:
    """``(dx, dy)``: the centre of ``b`` minus the centre of ``a``."""
    dx = ((b.x1 + b.x2) - (a.x1 + a.x2)) / 2
    dy = ((b.y1 + b.y2) - (a.y1 + a.y2)) / 2
    return dx, dy


def iou(a: Corners, b: Corners, eps: float) -> Array:
    """``I / (U + eps)``; 0 where ``U + eps == 0`` (two empty boxes)."""
    inter, union = intersection_union(a, b)
    return ratio(inter, union, eps)


def giou_penalty(a: Corners, b: Corners, eps: float) -> Array:
    """GIoU's ``(C - U) / (C + eps)``, C the enclosing area; 0 where ``C + eps == 0``."""
    _, union = intersection_union(a, b)
    cw, ch = enclosing_wh(a, b)
    area_c = cw * ch
    return ratio(area_c - union, area_c, eps)


def diou_penalty(a: Corners, b: Corners, eps: float) -> Array:
    """DIoU's ``rho^2 / (c^2 + eps)``: squared centre distance over squared diagonal of
    the enclosing box; 0 where ``c^2 + eps == 0`` (both boxes the same point)."""
    dx, dy = centre_offset(a, b)
    cw, ch = enclosing_wh(a, b)
    return safe_div(dx * dx + dy * dy, cw * cw + ch * ch + eps)


def aspect_v(a: Corners, b: Corners) -> Array:
    """CIoU's aspect-ratio consistency ``v = 4 / pi^2 (atan(wb/hb) - atan(wa/ha))^2``.

    The angle difference is evaluated as one ``atan2(wb ha - hb wa, hb ha + wb wa)``
    (the difference of ``atan2(w, h)`` of each box): finite with finite gradients for
    zero-height boxes (angle pi/2), one transcendental call instead of two, and 0 when
    either box is a point (no aspect ratio to match).
    """
    y = b.w * a.h - b.h * a.w
    x = b.h * a.h + b.w * a.w
    point = (x == 0) & (y == 0)
    d = jnp.where(point, 0, jnp.arctan2(jnp.where(point, 0, y), jnp.where(point, 1, x)))
    return (4 / math.pi**2) * d * d


def ciou_alpha(v: Array, iou_value: Array, eps: float) -> Array:
    """CIoU's trade-off ``alpha = v / ((1 - IoU) + v + eps)``, held constant for gradients.

    As in the authors' code and torchvision, alpha is not differentiated; 0 where the
    denominator is 0 (identical boxes with ``eps=0``).
    """
    return jax.lax.stop_gradient(safe_div(v, (1 - iou_value) + v + eps))
