"""COCO keypoint AP (OKS-based) through pycocotools, beside the box AP of ``coco_eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxvision._src.data.coco_eval import ground_truth_source, load_coco_dict, run_cocoeval
from jaxvision._src.export import export

COCO_KEYPOINT_METRIC_NAMES: tuple[str, ...] = (
    "AP",
    "AP50",
    "AP75",
    "APm",
    "APl",
    "AR",
    "AR50",
    "AR75",
    "ARm",
    "ARl",
)


@export("data.keypoints_to_coco")
def keypoints_to_coco(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    *,
    keypoint_scores: np.ndarray | None = None,
    category_id: int = 1,
) -> list[dict[str, Any]]:
    """Converts person keypoints into COCO keypoint result records.

    Args:
      image_ids: ``[P]`` COCO image id of each person.
      keypoints: ``[P, K, 2]`` ``(x, y)`` in image pixels (continuous coordinates: COCO's).
      scores: ``[P]`` instance scores (pycocotools ranks detections by them).
      keypoint_scores: optional ``[P, K]`` per-keypoint scores (not used by the metric);
        default 1.
      category_id: the person category's id.

    Returns:
      ``[{"image_id", "category_id", "keypoints": [x, y, s] * K, "score"}]``.
    """
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 2:
        raise ValueError(f"`keypoints` must be [P, K, 2], got {kp.shape}")
    scores = np.asarray(scores, np.float64)
    if scores.shape != kp.shape[:1] or np.shape(image_ids) != kp.shape[:1]:
        raise ValueError(f"`image_ids` and `scores` must be [{kp.shape[0]}]")
    ks = np.ones(kp.shape[:2]) if keypoint_scores is None else np.asarray(keypoint_scores)
    triples = np.concatenate([kp, ks[..., None]], -1).reshape(len(kp), -1)
    return [
        {
            "image_id": int(i),
            "category_id": int(category_id),
            "keypoints": [float(v) for v in t],
            "score": float(s),
        }
        for i, t, s in zip(np.asarray(image_ids), triples, scores, strict=True)
    ]


@export("data.coco_keypoints_evaluate")
def coco_keypoints_evaluate(
    ground_truth: dict[str, Any] | str | Path,
    results: list[dict[str, Any]],
    *,
    image_ids: np.ndarray | None = None,
) -> dict[str, float]:
    """COCO keypoint AP / AR (OKS thresholds .50:.05:.95, 20 detections per image).

    pycocotools' ``COCOeval(iouType="keypoints")`` with its default COCO sigmas; ground
    truths with ``num_keypoints == 0`` are ignored, as in COCO.

    Args:
      ground_truth: a COCO person-keypoints dict or its JSON path.
      results: records from :func:`keypoints_to_coco`.
      image_ids: evaluate only these images (default: all).

    Returns:
      ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}``
      (pycocotools' ``stats`` order; -1.0 where a size range has no ground truth; all 0.0
      without results).
    """
    if not results:
        return dict.fromkeys(COCO_KEYPOINT_METRIC_NAMES, 0.0)
    stats = run_cocoeval(
        load_coco_dict(ground_truth),
        results,
        "keypoints",
        image_ids=image_ids,
        source=ground_truth_source(ground_truth),
    )
    return {n: float(v) for n, v in zip(COCO_KEYPOINT_METRIC_NAMES, stats, strict=True)}
