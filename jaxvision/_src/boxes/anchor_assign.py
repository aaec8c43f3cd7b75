"""IoU-based anchor assignment with forced best anchors (SSD, RetinaFace), inside jit.

Every anchor takes the ground-truth box it overlaps most. It is positive when that IoU is
at least ``positive_iou``, negative below ``negative_iou``, ignored in between. Each ground
truth also claims its own best anchor (so a box that overlaps no anchor well still gets
one), unless even that best IoU is below ``min_best_iou``: such a box (smaller than every
anchor) is left unmatched, and its anchors stay negative or ignored as their IoU says.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks, iou
from jaxvision._src.export import export


@export("boxes.AnchorAssignment")
class AnchorAssignment(NamedTuple):
    """Result of :func:`assign_anchors`.

    Attributes:
      labels: ``[..., A]`` int32: 1 positive, 0 negative (background), -1 ignored.
      matched: ``[..., A]`` int32 index of the ground truth each anchor is matched to
        (its best-overlapping valid box, or the box that claimed it); -1 where no valid
        box overlaps the anchor at all. Meaningful for positives.
      max_iou: ``[..., A]`` float32 IoU of each anchor with its matched box (0 where none).

    Examples:
      >>> box = jnp.array([[0.0, 0.0, 10.0, 10.0]])
      >>> assign_anchors(box, box, jnp.array([True])).labels
      Array([1], dtype=int32)
    """

    labels: Array
    matched: Array
    max_iou: Array


def check_iou_option(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"`{name}` must be a number in [0, 1], got {value!r}")
    return float(value)


def _assign_one(
    anchors: Array, gt_boxes: Array, gt_valid: Array, pos: float, neg: float, min_best: float
) -> AnchorAssignment:
    """One image: ``anchors [A, 4]``, ``gt_boxes [G, 4]``, ``gt_valid [G]`` (xyxy)."""
    num_anchors = anchors.shape[0]
    if gt_boxes.shape[0] == 0:
        zeros = jnp.zeros(num_anchors, jnp.int32)
        return AnchorAssignment(zeros, zeros - 1, jnp.zeros(num_anchors, jnp.float32))
    overlaps = iou.box_iou(gt_boxes, anchors)  # [G, A]
    overlaps = jnp.where(gt_valid[:, None], overlaps, -1.0)
    # The best anchor of each box (lowest index on ties) and whether it may claim it.
    best_anchor = jnp.argmax(overlaps, axis=1)
    best_anchor_iou = jnp.max(overlaps, axis=1)
    claims = gt_valid & (best_anchor_iou >= min_best)
    forced = (jnp.arange(num_anchors)[None, :] == best_anchor[:, None]) & claims[:, None]
    # An anchor claimed by several boxes takes the one it overlaps most (lowest index on ties).
    claimed_by = jnp.argmax(jnp.where(forced, overlaps, -2.0), axis=0)
    is_claimed = jnp.any(forced, axis=0)
    best_gt = jnp.argmax(overlaps, axis=0)
    max_iou = jnp.max(overlaps, axis=0)
    matched = jnp.where(is_claimed, claimed_by, best_gt)
    max_iou = jnp.where(is_claimed, jnp.take_along_axis(overlaps, matched[None], 0)[0], max_iou)
    labels = jnp.where(max_iou >= pos, 1, jnp.where(max_iou < neg, 0, -1))
    labels = jnp.where(is_claimed, 1, labels)
    has_match = max_iou > 0
    return AnchorAssignment(
        labels.astype(jnp.int32),
        jnp.where(has_match | is_claimed, matched, -1).astype(jnp.int32),
        jnp.maximum(max_iou, 0.0).astype(jnp.float32),
    )


@export("boxes.assign_anchors")
def assign_anchors(
    anchors: ArrayLike,
    gt_boxes: ArrayLike,
    gt_valid: ArrayLike,
    *,
    positive_iou: float = 0.35,
    negative_iou: float = 0.35,
    min_best_iou: float = 0.2,
) -> AnchorAssignment:
    """Assigns anchors to padded ground-truth boxes by IoU, with static shapes (jit, vmap).

    1. ``IoU[g, a]`` between every valid box and every anchor (invalid boxes count -1).
    2. Each anchor's candidate is its best box (lowest index on ties); it is positive if
       that IoU ``>= positive_iou``, negative if ``< negative_iou``, else ignored (-1).
    3. Each valid box whose best anchor (lowest index on ties) has IoU ``>= min_best_iou``
       claims that anchor, which becomes positive and matched to it; when several boxes
       claim one anchor, the one with the highest IoU with it wins.

    The defaults are RetinaFace's (biubug6's port: 0.35 for both thresholds, best anchors
    kept only at IoU >= 0.2). Unlike that port, an anchor claimed by two boxes goes to the
    better-overlapping one rather than the later one, and a box that cannot claim an anchor
    never overwrites another's match. Boxes smaller than every anchor (best IoU below
    ``min_best_iou``) stay unmatched: their image then has only negatives there.

    Args:
      anchors: ``[A, 4]`` anchors ``xyxy`` (shared by the batch).
      gt_boxes: ``[..., G, 4]`` ground-truth boxes ``xyxy``, padded to ``G``.
      gt_valid: ``[..., G]`` bool, False for padding.
      positive_iou: IoU at or above which an anchor is positive.
      negative_iou: IoU below which an anchor is negative; ``<= positive_iou``.
      min_best_iou: the least IoU with which a box may claim its best anchor.

    Returns:
      :class:`AnchorAssignment` with fields ``[..., A]``.

    Raises:
      ValueError: bad shapes, or thresholds outside ``[0, 1]`` or with
        ``negative_iou > positive_iou``.

    References:
      Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016 (matching strategy);
      Deng et al., "RetinaFace", CVPR 2020.

    Examples:
      >>> anchors = jnp.array(
      ...     [[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [0.0, 0.0, 40.0, 40.0]]
      ... )
      >>> out = assign_anchors(anchors, jnp.array([[1.0, 0.0, 11.0, 10.0]]), jnp.array([True]))
      >>> out.labels, out.matched
      (Array([1, 0, 0], dtype=int32), Array([0, 0, 0], dtype=int32))
    """
    pos = check_iou_option(positive_iou, "positive_iou")
    neg = check_iou_option(negative_iou, "negative_iou")
    min_best = check_iou_option(min_best_iou, "min_best_iou")
    if neg > pos:
        raise ValueError(f"`negative_iou` ({neg}) must be <= `positive_iou` ({pos})")
    anchors = checks.as_boxes(anchors, "anchors")
    if anchors.ndim != 2:
        raise ValueError(f"`anchors` must have shape [A, 4], got shape {anchors.shape}")
    gt_boxes = checks.as_boxes(gt_boxes, "gt_boxes")
    if gt_boxes.ndim < 2:
        raise ValueError(f"`gt_boxes` must have shape [..., G, 4], got shape {gt_boxes.shape}")
    gt_valid = jnp.asarray(gt_valid)
    if gt_valid.shape != gt_boxes.shape[:-1]:
        raise ValueError(
            f"`gt_valid` must have shape {gt_boxes.shape[:-1]} (gt_boxes' [..., G]), "
            f"got shape {gt_valid.shape}"
        )
    batch = gt_boxes.shape[:-2]
    n = math.prod(batch)
    flat_boxes = gt_boxes.reshape(n, *gt_boxes.shape[-2:])
    flat_valid = gt_valid.reshape(n, gt_valid.shape[-1]).astype(bool)
    dtype = checks.compute_dtype(anchors, gt_boxes)
    out = _assign_batch(
        anchors.astype(dtype),
        flat_boxes.astype(dtype),
        flat_valid,
        pos=pos,
        neg=neg,
        min_best=min_best,
    )
    return AnchorAssignment(*(x.reshape(*batch, anchors.shape[0]) for x in out))


@functools.partial(jax.jit, static_argnames=("pos", "neg", "min_best"))
def _assign_batch(
    anchors: Array, gt_boxes: Array, gt_valid: Array, *, pos: float, neg: float, min_best: float
) -> AnchorAssignment:
    # One compiled computation, so that eager calls do not dispatch op by op.
    return jax.vmap(lambda b, v: _assign_one(anchors, b, v, pos, neg, min_best))(gt_boxes, gt_valid)
