"""What training and evaluating a DETR share: data, model, optimizer, prediction.

``train_detr.py`` and ``evaluate_detr.py`` both import this module (never each other).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from detr_config import Config
from flax import nnx

from jaxvision import data, models, parallel, train

TARGET_KEYS = ("images", "pixel_mask", "boxes", "labels", "mask")
MODELS = {"detr_tiny": models.detr_tiny, "detr_r50": models.detr_r50}


@dataclasses.dataclass
class Data:
    """Training records (shapes arrays or a COCO reader) and the held-out split."""

    class_names: tuple[str, ...]
    train: dict[str, np.ndarray] | None  # in-memory arrays [N, ...] (shapes)
    train_coco: data.CocoDetection | None  # a COCO folder read lazily (coco)
    val: data.CocoDetection


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def load_data(cfg: Config, workdir: Path) -> Data:
    """Generates (shapes) or reads (COCO) the training data and the held-out split.

    The shapes validation split is a dataset derived from the configuration, kept in
    ``workdir/shapes_val`` and regenerated when the options it depends on change.
    """
    if cfg.dataset == "shapes":
        options = {"image_size": cfg.image_size, "max_objects": cfg.max_objects, "seed": cfg.seed}
        train_set = data.shapes_dataset(cfg.num_train, split="train", **options)
        val_dir = workdir / "shapes_val"
        if jax.process_index() == 0:

            def build(folder: Path) -> None:
                data.export_coco(data.shapes_dataset(cfg.num_val, split="val", **options), folder)

            train.derived_dataset(val_dir, {**options, "num_val": cfg.num_val}, build)
        _barrier("val-export")
        val = data.read_coco_detection(val_dir / "annotations.json", val_dir / "images")
        return Data(train_set.class_names, data.detection_targets(train_set), None, val)
    root = Path(cfg.coco_dir)
    if not root.is_dir():
        raise train.ConfigError(f"coco_dir {root!s} is not a folder (preset {cfg.name} needs COCO)")
    ann = root / "annotations"
    train_coco = data.read_coco_detection(ann / "instances_train2017.json", root / "train2017")
    val = data.read_coco_detection(ann / "instances_val2017.json", root / "val2017")
    return Data(train_coco.class_names, None, train_coco, val)


class _Rows:
    """The in-memory training arrays as a random-access source for ``data.Loader``."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = {k: arrays[k] for k in TARGET_KEYS}

    def __len__(self) -> int:
        return len(self.arrays["images"])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[i] for k, v in self.arrays.items()}


def train_batches(cfg: Config, d: Data, mesh: jax.sharding.Mesh, start: int) -> Iterator[Any]:
    """Global training batches from step ``start`` on, sharded on ``mesh``.

    The batch of step ``i`` depends only on ``(seed, i)``, so a resumed run sees exactly
    the batches an uninterrupted one would. Shapes: ``data.Loader`` (a new permutation
    each epoch); COCO: size-bucketed batches of ``data.coco_batches``, one epoch at a time.
    """
    if d.train is not None:
        loader = data.Loader(
            _Rows(d.train), global_batch_size=cfg.batch_size, seed=cfg.seed, mesh=mesh
        )
        loader.set_state({"batches": start, "seed": cfg.seed})
        return loader
    return _coco_batches(cfg, d.train_coco, mesh, start)


def _coco_batches(cfg: Config, coco: data.CocoDetection, mesh: Any, start: int) -> Iterator[Any]:
    rows = parallel.process_batch_slice(cfg.batch_size, mesh)
    epoch, skip = divmod(start, math.ceil(len(coco) / cfg.batch_size))
    while True:
        it = data.coco_batches(
            coco,
            cfg.batch_size,
            max_boxes=cfg.max_boxes,
            buckets=cfg.buckets,
            shuffle=True,
            seed=cfg.seed * 100_003 + epoch,
        )
        for j, batch in enumerate(it):
            if j >= skip:
                yield parallel.shard_batch({k: batch[k][rows] for k in TARGET_KEYS}, mesh)
        epoch, skip = epoch + 1, 0


def val_batches(
    cfg: Config, coco: data.CocoDetection, *, max_boxes: int | None = None
) -> Callable[[], Iterable[dict[str, np.ndarray]]]:
    """``batches()``: one pass over the held-out split (kept in memory when small)."""
    max_boxes = max(max_boxes or cfg.max_boxes, max((len(x) for x in coco.labels), default=1))

    def one_pass() -> Iterator[dict[str, np.ndarray]]:
        return data.coco_batches(
            coco, cfg.eval_batch_size, max_boxes=max_boxes, buckets=cfg.buckets
        )

    if len(coco) > 5000:
        return one_pass
    cached = list(one_pass())
    return lambda: cached


def build_model(cfg: Config, num_classes: int) -> nnx.Module:
    """The DETR of the preset; with ``class_prior`` the class head starts at that object
    probability (the focal-loss prior of RetinaNet), which shortens the flat start."""
    model = MODELS[cfg.model](
        num_classes, num_queries=cfg.num_queries, rngs=nnx.Rngs(cfg.seed), **cfg.model_kwargs
    )
    if cfg.class_prior > 0:
        bias = -math.log((1 - cfg.class_prior) / cfg.class_prior)
        model.class_head.bias[...] = jnp.full((num_classes + 1,), bias).at[-1].set(0.0)
    return model


def normalise(images: jax.Array) -> jax.Array:
    """uint8 ``[B, H, W, 3]`` to float32 with ImageNet mean and std, as DETR."""
    mean = jnp.asarray([0.485, 0.456, 0.406]) * 255.0
    std = jnp.asarray([0.229, 0.224, 0.225]) * 255.0
    return (images.astype(jnp.float32) - mean) / std


def schedule(cfg: Config) -> optax.Schedule:
    """Linear warm-up, constant, then cosine decay to ``final_lr_fraction`` over the last
    ``decay_fraction`` of the steps (1.0: cosine over the whole run after warm-up)."""
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 2))
    decay = max(1, min(cfg.steps - warmup, round(cfg.decay_fraction * cfg.steps)))
    flat = cfg.steps - warmup - decay
    final = cfg.lr * cfg.final_lr_fraction
    parts = [optax.linear_schedule(0.0, cfg.lr, warmup)]
    if flat > 0:
        parts.append(optax.constant_schedule(cfg.lr))
    parts.append(optax.cosine_decay_schedule(cfg.lr, decay, final / cfg.lr))
    bounds = [warmup, warmup + flat] if flat > 0 else [warmup]
    return optax.join_schedules(parts, bounds)


def make_optimizer(cfg: Config, model: nnx.Module) -> optax.GradientTransformation:
    """DETR's AdamW (backbone at a lower rate, frozen stem, clipped gradients) on
    :func:`schedule`."""
    lr = schedule(cfg)
    return models.detr_optimizer(
        model.config,
        learning_rate=lr,
        backbone_learning_rate=lambda step: cfg.backbone_lr_multiplier * lr(step),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.clip_norm,
    )


def init_state(
    cfg: Config, num_classes: int, mesh: jax.sharding.Mesh
) -> tuple[Any, parallel.TrainState, optax.GradientTransformation]:
    """The model's graph definition, its replicated train state at step 0, the optimizer.

    The model is built eagerly. Built as one jitted program its initialisers compile in
    half the CPU time, but their draws differ from the eager ones in the last bit of a few
    parameters, and a DETR trained from them follows another trajectory (AP50 0.884
    instead of 0.952 for seed 0 of the main job, BENCHMARKS.md)."""
    model = build_model(cfg, num_classes)
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    # Plain nested dicts of arrays, not trees of nnx.Variable: each step flattens its input
    # state and rebuilds its output state in Python, which for Variables cost ~5 ms of
    # the main job's ~70 ms step; nnx.merge takes the pure dicts as they are.
    params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
    optimizer = make_optimizer(cfg, model)
    state = parallel.TrainState.create(params, optimizer, model_state=model_state)
    return graphdef, parallel.replicate_on_mesh(state, mesh), optimizer


def make_predict(graphdef: Any) -> Any:
    """``predict(params, model_state, images, pixel_mask, sizes) -> detections``, jitted."""

    @jax.jit
    def predict(params, model_state, images, pixel_mask, sizes):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        return models.detr_postprocess(model(normalise(images), pixel_mask), sizes)

    return predict
