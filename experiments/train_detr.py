"""Trains DETR end to end, evaluates COCO AP with pycocotools, draws what it sees.

The default preset trains a small DETR on the built-in "shapes" dataset on this CPU in
under ten minutes, no download needed::

    python experiments/train_detr.py

The official DETR-R50 COCO recipe (AdamW 1e-4, backbone 1e-5, weight decay 1e-4, clip
0.1, batch 64, 500 epochs) runs unchanged on a GPU, a TPU or many hosts::

    python experiments/train_detr.py --preset coco_r50 --coco-dir /data/coco

Every local device is used (data parallel over a one-axis mesh); for several processes
start it through the launcher (``--num-processes``) or let JAX discover them on TPU pods
and clusters (``--distributed``). Re-running the same command resumes from the last
checkpoint in ``--workdir``; the same seed gives the same result. The last line printed
is one JSON object with the final metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from jaxvision import data, models, parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detr_figures  # noqa: E402


@dataclasses.dataclass
class Config:
    """One flat training configuration; presets below fill it."""

    name: str
    dataset: str = "shapes"  # "shapes" (generated) or "coco" (a COCO-format folder)
    coco_dir: str = ""
    image_size: int = 64
    num_train: int = 8192
    num_val: int = 500
    max_objects: int = 3
    max_boxes: int = 3
    buckets: tuple[int, ...] = (64,)
    model: str = "detr_tiny"
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_queries: int = 10
    class_prior: float = 0.0  # > 0: initial object probability of the class head
    batch_size: int = 32  # global, over all devices and processes
    steps: int = 1500
    warmup_steps: int = 100
    lr: float = 1e-3
    final_lr_fraction: float = 0.05
    backbone_lr_multiplier: float = 1.0
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    loss_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_every: int = 20
    eval_every: int = 500
    checkpoint_every: int = 250
    eval_batch_size: int = 100
    score_threshold: float = 0.5  # for the picture only; AP uses every prediction
    seed: int = 0


def preset_shapes() -> Config:
    """The README's main command: a small DETR on 64x64 shapes, ~10 min on 2 CPU cores.

    ``python experiments/train_detr.py``
    """
    return Config(name="shapes")


def preset_smoke() -> Config:
    """A few steps on tiny images, for CI: ``python experiments/train_detr.py --preset smoke``."""
    return Config(
        name="smoke",
        image_size=32,
        num_train=64,
        num_val=16,
        max_objects=2,
        max_boxes=2,
        buckets=(32,),
        model_kwargs={"hidden_dim": 32},
        num_queries=4,
        batch_size=8,
        steps=4,
        warmup_steps=2,
        log_every=1,
        eval_every=2,
        checkpoint_every=2,
        eval_batch_size=8,
    )


def preset_coco_r50() -> Config:
    """The official DETR-R50 COCO recipe, for accelerators.

    ``python experiments/train_detr.py --preset coco_r50 --coco-dir /data/coco`` where
    ``/data/coco`` holds ``train2017/``, ``val2017/`` and ``annotations/``. 500 epochs of
    118k images at batch 64 (the paper's 42.0 AP schedule, lr drop at epoch 400).
    """
    steps_per_epoch = 118_287 // 64
    return Config(
        name="coco_r50",
        dataset="coco",
        image_size=1333,
        max_boxes=100,
        buckets=(512, 640, 800, 1024, 1333),
        model="detr_r50",
        num_queries=100,
        batch_size=64,
        steps=500 * steps_per_epoch,
        warmup_steps=0,
        lr=1e-4,
        final_lr_fraction=0.1,
        backbone_lr_multiplier=0.1,
        weight_decay=1e-4,
        clip_norm=0.1,
        log_every=100,
        eval_every=10 * steps_per_epoch,
        checkpoint_every=steps_per_epoch,
        eval_batch_size=64,
    )


PRESETS = {"shapes": preset_shapes, "smoke": preset_smoke, "coco_r50": preset_coco_r50}
