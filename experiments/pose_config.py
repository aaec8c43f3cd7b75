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


PRESETS: dict[str, dict[str, Any]] = {
    "integral": {},
    "heatmap": {"head": "heatmap"},
    "simcc": {"head": "simcc"},
    "rle": {"head": "rle"},
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
    },
}
