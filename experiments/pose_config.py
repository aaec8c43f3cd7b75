"""The pose experiments' configuration (``experiments/train_pose.py``): one flat dataclass
and its presets.

Any field can be overridden on the command line, checked against its type:
``--set lr=5e-3 --set input_h=96``. Each preset's comment says what it is and how it was
measured (BENCHMARKS.md, "Pose: ...").
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class Config:
    """One flat training configuration; the presets below fill it."""

    head: str = "integral"  # heatmap | integral | simcc | rle
    model: str = "small"  # small (CPU preset) | resnet50
    input_h: int = 64
    input_w: int = 48
    integral_debias: bool = False
    integral_heatmap_weight: float = 0.0  # > 0: the DSNT distribution regulariser's weight
    deconv_layers: int = 0  # 0: the preset's (2 for small, 3 for resnet50); 1 fewer = stride x2
    heatmap_sigma: float = 1.0  # map pixels
    simcc_sigma: float = 2.0  # bins
    coco_dir: str = ""  # empty: generated figures
    data_dir: str = ""  # where generated data is cached (default: <workdir>/data)
    train_images: int = 2000
    val_images: int = 200
    image_size: int = 128
    steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    flip: bool = True  # mirror half the training crops (with the COCO left / right swap)
    log_every: int = 100
    checkpoint_every: int = 500
    seed: int = 0


# The generated figures colour their left limbs warm and their right limbs cool, so a
# mirrored crop (its left / right labels swapped) shows a figure the validation set never
# has: no flip there (600 steps: AP 0.183 without, 0.150 with). AdamW 5e-3 (600 steps:
# AP 0.298 against 0.183 at 2e-3).
_GENERATED = {"flip": False, "lr": 5e-3}

PRESETS: dict[str, dict[str, Any]] = {
    # The integral model of BENCHMARKS.md "Pose: the integral model": soft-argmax + L1 with
    # the DSNT distribution regulariser (weight 1), 2000 steps of batch 32 at 64 x 48:
    # OKS AP 0.638 in 480 CPU-seconds (1200 steps: 0.602 in 331 CPU-seconds, 3.5 minutes of
    # wall time on the idle 2-core CPU; 2000 steps leave a margin over the 0.6 target).
    # ``python experiments/train_pose.py --workdir runs/pose-integral``
    "integral": _GENERATED | {"integral_heatmap_weight": 1.0, "steps": 2000},
    "heatmap": _GENERATED | {"head": "heatmap"},
    "simcc": _GENERATED | {"head": "simcc"},
    "rle": _GENERATED | {"head": "rle"},
    "coco_r50": {
        "model": "resnet50",
        "input_h": 256,
        "input_w": 192,
        "heatmap_sigma": 2.0,
        "simcc_sigma": 6.0,
        "steps": 140 * 1170,
        "batch_size": 128,
        "lr": 1e-3,
        "warmup_steps": 500,
        "flip": True,
    },
}
