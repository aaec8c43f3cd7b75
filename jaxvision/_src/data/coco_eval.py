"""COCO box AP through pycocotools, the metric every detection paper reports."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jaxvision._src.data.coco import fill_annotation_defaults, load_coco_json
from jaxvision._src.data.datasets import CocoDetection, CocoFormatError
from jaxvision._src.export import export

COCO_METRIC_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


@export("data.detections_to_coco")
def detections_to_coco(
    image_ids: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    category_ids: np.ndarray,
    *,
    sizes: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    score_threshold: float = 0.0,
) -> list[dict[str, Any]]:
    """Converts a batch of scored boxes into COCO result records.

    Args:
      image_ids: ``[B]`` COCO image ids.
      boxes: ``[B, Q, 4]`` ``xyxy`` in pixels (``models.detr_postprocess`` gives them).
      scores: ``[B, Q]`` confidence of each prediction.
      labels: ``[B, Q]`` contiguous class indices ``0..C-1``; a negative label (``-1``,
        padding) marks no object and is left out, never mapped to a category.
      category_ids: ``[C]`` COCO category id of each contiguous label.
      sizes: optional ``[B, 2]`` ``(height, width)``; boxes are clipped to the image.
      valid: optional ``[B]`` bool; False rows (batch padding) are left out.
      score_threshold: predictions scoring at or below it are left out.

    Returns:
      A list of ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.
      Predictions with a non-finite box coordinate or score (NaN ranks last, below every
      threshold) or a negative label are left out; a ``RuntimeWarning`` gives their count.

    Raises:
      ValueError: shapes disagree, or a label is ``>= C``.
    """
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    category_ids = np.asarray(category_ids)
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, Q, 4], got {boxes.shape}")
    if scores.shape != boxes.shape[:2] or labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"scores {scores.shape} and labels {labels.shape} must be {boxes.shape[:2]}"
        )
    if labels.size and labels.max() >= len(category_ids):
        raise ValueError(
            f"labels must be < {len(category_ids)} (the number of category_ids), got {labels.max()}"
        )
    valid = np.ones(boxes.shape[0], bool) if valid is None else np.asarray(valid, bool)
    keep = np.isfinite(boxes).all(-1) & np.isfinite(scores) & (labels >= 0)
    x0, y0, x1, y1 = np.moveaxis(boxes, -1, 0)
    if sizes is not None:
        sizes = np.asarray(sizes, np.float64)
        h, w = sizes[:, 0, None], sizes[:, 1, None]
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
    records = []
    dropped = int((~keep[valid]).sum())
    if dropped:
        warnings.warn(
            f"detections_to_coco: left out {dropped} of {keep[valid].size} predictions "
            "with a non-finite box or score or a negative label",
            RuntimeWarning,
            stacklevel=2,
        )
    for b in np.flatnonzero(valid):
        for q in np.flatnonzero(keep[b] & (scores[b] > score_threshold)):
            records.append(
                {
                    "image_id": int(image_ids[b]),
                    "category_id": int(category_ids[labels[b, q]]),
                    "bbox": [
                        float(x0[b, q]),
                        float(y0[b, q]),
                        float(x1[b, q] - x0[b, q]),
                        float(y1[b, q] - y0[b, q]),
                    ],
                    "score": float(scores[b, q]),
                }
            )
    return records


@export("metrics.coco_evaluate", deprecated=("data.coco_evaluate",))
def coco_evaluate(
    ground_truth: CocoDetection | dict[str, Any] | str | Path,
    detections: list[dict[str, Any]],
    *,
    image_ids: np.ndarray | None = None,
) -> dict[str, float]:
    """COCO box AP / AR of ``detections`` against ``ground_truth``, by pycocotools.

    Args:
      ground_truth: a :class:`CocoDetection`, a parsed COCO annotation dict, or its path;
        missing ``iscrowd`` / ``area`` are filled by the reader's rule (0, ``w * h``).
      detections: COCO result records (see :func:`detections_to_coco`).
      image_ids: evaluate only these images (default: every image of the ground truth).

    Returns:
      ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
      "ARl"}`` as floats in ``[0, 1]``, pycocotools' ``stats`` in its order. Where
      pycocotools reports -1 (no ground truth of that size) the value is kept as -1.0. With
      no detections at all every value is 0.0 (pycocotools cannot load an empty result).
    """
    if isinstance(ground_truth, CocoDetection):
        gt_dict = ground_truth.coco
    else:
        gt_dict = load_coco_dict(ground_truth)
    if not detections:
        return dict.fromkeys(COCO_METRIC_NAMES, 0.0)
    stats = run_cocoeval(
        gt_dict, detections, "bbox", image_ids=image_ids, source=ground_truth_source(ground_truth)
    )
    return {name: float(v) for name, v in zip(COCO_METRIC_NAMES, stats, strict=True)}


def ground_truth_source(ground_truth: object) -> str | Path:
    """The file a ground truth came from, for error messages."""
    if isinstance(ground_truth, CocoDetection):
        return ground_truth.annotation_file
    return ground_truth if isinstance(ground_truth, str | Path) else "ground_truth"


def load_coco_dict(ground_truth: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A parsed COCO annotation dict, from the dict itself or its JSON path."""
    if isinstance(ground_truth, dict):
        return ground_truth
    return load_coco_json(Path(ground_truth))


def run_cocoeval(
    gt_dict: dict[str, Any],
    results: list[dict[str, Any]],
    iou_type: str,
    *,
    image_ids: np.ndarray | None = None,
    source: str | Path = "ground_truth",
) -> np.ndarray:
    """pycocotools' evaluate / accumulate / summarize, quietly; returns ``stats``.

    ``source`` names the ground truth (its file) in the errors of the reader's field rule.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_dict = copy.copy(gt_dict)
    if not isinstance(gt_dict.get("annotations"), list):
        raise CocoFormatError("ground_truth: top level: field 'annotations': missing or not a list")
    # The reader's rule for the fields pycocotools needs, on copies of the records.
    gt_dict["annotations"] = [dict(a) if isinstance(a, dict) else a for a in gt_dict["annotations"]]
    fill_annotation_defaults(Path(source), gt_dict["annotations"])
    gt_dict.setdefault("info", {})
    gt_dict.setdefault("licenses", [])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType=iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = [int(i) for i in image_ids]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)
