"""Keypoint metrics: COCO object keypoint similarity (OKS), PCK, PCKh and end-point error."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.keypoints.constants import COCO_SIGMAS

# pycocotools adds np.spacing(1) to the area (an area of 0 then gives OKS 1 at d = 0).
_AREA_EPS = float(np.spacing(1))


def _outside_box(pred: Array, boxes: Array) -> tuple[Array, Array]:
    """Distance of ``pred [..., N, 1, K, 2]`` outside ``boxes [..., 1, M, 1, 4]`` (xywh)
    enlarged by one box size on each side: pycocotools' rule for unlabelled ground truths."""
    x, y, w, h = (boxes[..., i] for i in range(4))
    x0, x1, y0, y1 = x - w, x + 2 * w, y - h, y + 2 * h
    px, py = pred[..., 0], pred[..., 1]
    dx = jnp.maximum(0.0, x0 - px) + jnp.maximum(0.0, px - x1)
    dy = jnp.maximum(0.0, y0 - py) + jnp.maximum(0.0, py - y1)
    return dx, dy


@export("metrics.keypoint_oks")
def keypoint_oks(
    pred_keypoints: ArrayLike,
    gt_keypoints: ArrayLike,
    gt_areas: ArrayLike,
    *,
    gt_boxes: ArrayLike | None = None,
    sigmas: ArrayLike | None = None,
) -> Array:
    """Pairwise object keypoint similarity, as pycocotools' ``COCOeval.computeOks``.

    ``OKS = mean_{i visible} exp(-d_i^2 / (2 (area + eps) (2 sigma_i)^2))`` over the
    ground truth's labelled keypoints (visibility > 0), ``eps = np.spacing(1)``. For a
    ground truth with no labelled keypoint, pycocotools measures each predicted keypoint's
    distance outside the ground-truth box enlarged by one box size on every side and
    averages over all ``K``: pass ``gt_boxes`` for that; without it such pairs score 0.

    Args:
      pred_keypoints: ``[..., N, K, 2]`` (x, y) detections (a score column is not used).
      gt_keypoints: ``[..., M, K, 3]`` (x, y, visibility) ground truths.
      gt_areas: ``[..., M]`` ground-truth segment areas (COCO ``area``).
      gt_boxes: optional ``[..., M, 4]`` ``xywh`` ground-truth boxes (COCO ``bbox``).
      sigmas: ``[K]`` per-keypoint sigmas; ``None``: ``keypoints.COCO_SIGMAS`` (K = 17).

    Returns:
      ``[..., N, M]`` OKS in ``[0, 1]``, float32 (float64 for float64 input).

    References:
      Ruggero Ronchi & Perona, "Benchmarking and Error Diagnosis in Multi-Instance Pose
      Estimation", ICCV 2017; pycocotools ``cocoeval.py``.

    Examples:
      >>> import numpy as np
      >>> gt = np.concatenate([np.random.default_rng(0).uniform(0, 100, (1, 17, 2)),
      ...                      np.full((1, 17, 1), 2.0)], axis=-1)
      >>> pred = gt[:, :, :2].copy()
      >>> pred[0, 0, 0] += 10.0
      >>> round(float(keypoint_oks(pred, gt, np.array([10000.0]))[0, 0]), 6)
      0.950434
    """
    pred = checks.as_float(pred_keypoints, "pred_keypoints")
    gt = checks.as_float(gt_keypoints, "gt_keypoints")
    area = checks.as_float(gt_areas, "gt_areas")
    if pred.ndim < 3 or pred.shape[-1] not in (2, 3):
        raise ValueError(f"`pred_keypoints` must be [..., N, K, 2], got shape {pred.shape}")
    if gt.ndim < 3 or gt.shape[-1] != 3:
        raise ValueError(f"`gt_keypoints` must be [..., M, K, 3], got shape {gt.shape}")
    k = gt.shape[-2]
    if pred.shape[-2] != k or pred.shape[:-3] != gt.shape[:-3]:
        raise ValueError(
            f"`pred_keypoints` {pred.shape} and `gt_keypoints` {gt.shape} must agree on the "
            "batch dimensions and K"
        )
    if area.shape != gt.shape[:-2]:
        raise ValueError(f"`gt_areas` must have shape {gt.shape[:-2]}, got {area.shape}")
    s = jnp.asarray(COCO_SIGMAS if sigmas is None else sigmas, pred.dtype)
    if s.shape != (k,):
        raise ValueError(f"`sigmas` must have shape ({k},) to match K = {k}, got {s.shape}")
    var = (2 * s) ** 2
    p = pred[..., :, None, :, :2]  # [..., N, 1, K, 2]
    g = gt[..., None, :, :, :]  # [..., 1, M, K, 3]
    vis = g[..., 2] > 0
    dx, dy = p[..., 0] - g[..., 0], p[..., 1] - g[..., 1]
    labelled = jnp.any(vis, axis=-1, keepdims=True)  # [..., 1, M, 1]
    denom = var * (area[..., None, :, None] + _AREA_EPS) * 2
    e = (dx**2 + dy**2) / denom
    labelled_oks = checks.safe_div(jnp.sum(jnp.where(vis, jnp.exp(-e), 0.0), -1), jnp.sum(vis, -1))
    if gt_boxes is None:
        return jnp.where(labelled[..., 0], labelled_oks, 0.0)
    boxes = checks.as_float(gt_boxes, "gt_boxes")
    if boxes.shape != gt.shape[:-2] + (4,):
        raise ValueError(f"`gt_boxes` must have shape {gt.shape[:-2] + (4,)}, got {boxes.shape}")
    ox, oy = _outside_box(p, boxes[..., None, :, None, :])
    box_oks = jnp.mean(jnp.exp(-(ox**2 + oy**2) / denom), axis=-1)
    return jnp.where(labelled[..., 0], labelled_oks, box_oks)


def _normalised_errors(
    pred: ArrayLike, gt: ArrayLike, visibility: ArrayLike | None, normalizer: ArrayLike | None
) -> tuple[Array, Array]:
    """Per-keypoint ``||pred - gt|| / normalizer`` ``[..., K]`` and the visible mask."""
    p = checks.as_keypoints(pred, "pred")
    g = checks.as_keypoints(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"`pred` {p.shape} and `gt` {g.shape} must have the same shape")
    vis = checks.check_visibility(visibility, p, "visibility") > 0
    d = jnp.sqrt(jnp.sum((p - g) ** 2, axis=-1))
    if normalizer is not None:
        n = checks.as_float(normalizer, "normalizer")
        if n.shape != p.shape[:-2]:
            raise ValueError(f"`normalizer` must have shape {p.shape[:-2]}, got {n.shape}")
        n = n[..., None]
        d = jnp.where(n > 0, d / jnp.where(n > 0, n, 1.0), jnp.inf)
    return d, vis


def _fraction_below(d: Array, vis: Array, threshold: float) -> Array:
    return checks.safe_div(jnp.sum(vis & (d < threshold)), jnp.sum(vis)).astype(jnp.float32)


@export("metrics.keypoint_pck")
def keypoint_pck(
    pred: ArrayLike,
    gt: ArrayLike,
    visibility: ArrayLike | None,
    normalizer: ArrayLike,
    *,
    threshold: float = 0.05,
) -> Array:
    """Percentage of correct keypoints: the fraction of visible keypoints with
    ``||pred - gt|| / normalizer < threshold`` (strict, as mmpose), pooled over all.

    Args:
      pred, gt: ``[..., K, 2]`` keypoints in pixels.
      visibility: ``[..., K]``; only keypoints with visibility > 0 count. ``None``: all.
      normalizer: ``[...]`` per-instance size, e.g. ``max(w, h)`` of the box (mmpose's
        ``norm_item="bbox"``); a size <= 0 makes the instance's keypoints incorrect.
      threshold: e.g. 0.05 (PCK@0.05) or 0.2.

    Returns:
      Scalar float32 in ``[0, 1]``; 0 when no keypoint is visible.

    Examples:
      >>> import numpy as np
      >>> gt = np.zeros((1, 2, 2))
      >>> pred = np.array([[[1.0, 0.0], [0.0, 6.0]]])
      >>> float(keypoint_pck(pred, gt, None, np.array([100.0])))
      0.5
    """
    d, vis = _normalised_errors(pred, gt, visibility, normalizer)
    return _fraction_below(d, vis, threshold)


@export("metrics.keypoint_pckh")
def keypoint_pckh(
    pred: ArrayLike,
    gt: ArrayLike,
    visibility: ArrayLike | None,
    head_boxes: ArrayLike,
    *,
    threshold: float = 0.5,
) -> Array:
    """PCKh (MPII): normalised by the head size ``0.6 * ||head-box diagonal||``, strict <.

    Args:
      pred, gt: ``[..., K, 2]`` keypoints in pixels.
      visibility: ``[..., K]``; ``None``: all.
      head_boxes: ``[..., 4]`` ``xyxy`` head boxes.
      threshold: 0.5 for PCKh@0.5.

    Returns:
      Scalar float32 in ``[0, 1]``.

    Examples:
      >>> import numpy as np
      >>> head = np.array([[0.0, 0.0, 6.0, 8.0]])  # diagonal 10, head size 6
      >>> float(keypoint_pckh(np.array([[[3.0, 0.0]]]), np.zeros((1, 1, 2)), None, head))
      0.0
    """
    hb = checks.as_float(head_boxes, "head_boxes")
    if hb.ndim < 1 or hb.shape[-1] != 4:
        raise ValueError(f"`head_boxes` must be [..., 4], got shape {hb.shape}")
    size = 0.6 * jnp.sqrt((hb[..., 2] - hb[..., 0]) ** 2 + (hb[..., 3] - hb[..., 1]) ** 2)
    d, vis = _normalised_errors(pred, gt, visibility, size)
    return _fraction_below(d, vis, threshold)


@export("metrics.keypoint_epe")
def keypoint_epe(pred: ArrayLike, gt: ArrayLike, visibility: ArrayLike | None = None) -> Array:
    """Mean end-point error ``||pred - gt||`` over the visible keypoints (0 if none).

    Args:
      pred, gt: ``[..., K, 2]``; visibility: ``[..., K]`` or ``None`` (all).

    Returns:
      Scalar float32, in the pixels of the inputs.

    Examples:
      >>> import numpy as np
      >>> float(keypoint_epe(np.array([[3.0, 4.0], [1.0, 0.0]]), np.zeros((2, 2)), [1, 0]))
      5.0
    """
    d, vis = _normalised_errors(pred, gt, visibility, None)
    return checks.safe_div(jnp.sum(jnp.where(vis, d, 0.0)), jnp.sum(vis)).astype(jnp.float32)
