"""COCO person-keypoint constants: names, per-keypoint OKS sigmas, flip pairs, skeleton."""

from __future__ import annotations

from jaxvision._src.export import REGISTRY, Endpoint

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# pycocotools' COCOeval Params.kpt_oks_sigmas (Ruggero Ronchi & Perona, ICCV 2017).
COCO_SIGMAS: tuple[float, ...] = (
    0.026,
    0.025,
    0.025,
    0.035,
    0.035,
    0.079,
    0.079,
    0.072,
    0.072,
    0.062,
    0.062,
    0.107,
    0.107,
    0.087,
    0.087,
    0.089,
    0.089,
)

# (left, right) index pairs swapped by a horizontal flip.
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
)

# The limbs of COCO's person category, 0-based (the annotation file's "skeleton" is 1-based).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)

for _name in ("COCO_KEYPOINT_NAMES", "COCO_SIGMAS", "COCO_FLIP_PAIRS", "COCO_SKELETON"):
    REGISTRY.add(Endpoint(f"keypoints.{_name}", __name__, _name, globals()[_name]))
