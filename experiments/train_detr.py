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
    steps: int = 4000
    warmup_steps: int = 200
    lr: float = 1e-3
    final_lr_fraction: float = 0.05
    backbone_lr_multiplier: float = 1.0
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    loss_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    log_every: int = 50
    eval_every: int = 1000
    checkpoint_every: int = 500
    eval_batch_size: int = 100
    score_threshold: float = 0.7  # for the picture only; AP uses every prediction
    seed: int = 0


def preset_shapes() -> Config:
    """The README's main command: a small DETR on 64x64 shapes, ~10 min on 2 CPU cores.

    ``python experiments/train_detr.py``

    The class term of the loss counts twice (``class_weight=2``, DETR uses 1): the class
    loss is what sits at ln(C+1) during DETR's flat start, and weighting it shortened
    that start from ~1000 to ~500 steps here (AP50 0.52 against 0.14 after 1000 steps).
    """
    return Config(name="shapes", loss_kwargs={"class_weight": 2.0})


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
        model_kwargs={
            "d_model": 32,
            "num_heads": 2,
            "ffn_dim": 64,
            "num_encoder_layers": 1,
            "num_decoder_layers": 1,
            "backbone": {"widths": (8, 16, 32), "stem_width": 8},
        },
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


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class Data:
    """Training arrays (shapes) or a COCO reader, and the held-out split for COCO AP."""

    class_names: tuple[str, ...]
    train: dict[str, np.ndarray] | None  # in-memory arrays [N, ...] (shapes)
    train_coco: data.CocoDetection | None  # a COCO folder read lazily (coco)
    val: data.CocoDetection


def load_data(cfg: Config, workdir: Path) -> Data:
    """Generates (once per seed, before training) or reads the train and validation data."""
    if cfg.dataset == "shapes":
        kwargs = {"image_size": cfg.image_size, "max_objects": cfg.max_objects, "seed": cfg.seed}
        train = data.shapes_dataset(cfg.num_train, split="train", **kwargs)
        val_dir = workdir / "shapes_val"
        if not (val_dir / "annotations.json").exists() and jax.process_index() == 0:
            data.export_coco(data.shapes_dataset(cfg.num_val, split="val", **kwargs), val_dir)
        _barrier("val-export")
        val = data.read_coco_detection(val_dir / "annotations.json", val_dir / "images")
        return Data(train.class_names, data.detection_targets(train), None, val)
    root = Path(cfg.coco_dir)
    if not root.is_dir():
        raise SystemExit(f"--coco-dir {root!s} is not a folder (preset {cfg.name} needs COCO)")
    train = data.read_coco_detection(
        root / "annotations" / "instances_train2017.json", root / "train2017"
    )
    val = data.read_coco_detection(
        root / "annotations" / "instances_val2017.json", root / "val2017"
    )
    return Data(train.class_names, None, train, val)


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def train_batches(cfg: Config, d: Data, mesh: jax.sharding.Mesh, start: int) -> Iterator[dict]:
    """This process's rows of each global batch, from step ``start`` on.

    The batch of step ``i`` depends only on ``(seed, i)``, so a resumed run sees exactly
    the batches an uninterrupted one would.
    """
    rows = parallel.process_batch_slice(cfg.batch_size, mesh)
    keys = ("images", "pixel_mask", "boxes", "labels", "mask")
    if d.train is not None:
        n = len(d.train["images"])
        for i in range(start, cfg.steps):
            idx = np.random.default_rng([cfg.seed, i]).integers(0, n, cfg.batch_size)[rows]
            yield {k: d.train[k][idx] for k in keys}
        return
    epoch_len = math.ceil(len(d.train_coco) / cfg.batch_size)
    epoch, skip = divmod(start, epoch_len)
    while True:
        it = data.coco_batches(
            d.train_coco,
            cfg.batch_size,
            max_boxes=cfg.max_boxes,
            buckets=cfg.buckets,
            shuffle=True,
            seed=cfg.seed * 100_003 + epoch,
        )
        for j, batch in enumerate(it):
            if j >= skip:
                yield {k: batch[k][rows] for k in keys}
        epoch, skip = epoch + 1, 0


# ----------------------------------------------------------------------------- model


MODELS = {"detr_tiny": models.detr_tiny, "detr_r50": models.detr_r50}


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


def make_optimizer(cfg: Config, model: nnx.Module) -> optax.GradientTransformation:
    """DETR's AdamW (backbone at a lower rate, frozen stem, clipped gradients) on a
    linear warm-up then cosine schedule."""
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 2))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1), cfg.lr * cfg.final_lr_fraction
    )
    return models.detr_optimizer(
        model.config,
        learning_rate=schedule,
        backbone_learning_rate=lambda step: cfg.backbone_lr_multiplier * schedule(step),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.clip_norm,
    )


def init_state(
    cfg: Config, num_classes: int, mesh: jax.sharding.Mesh
) -> tuple[Any, parallel.TrainState, optax.GradientTransformation]:
    """The model's graph definition, its replicated train state at step 0, the optimizer."""
    model = build_model(cfg, num_classes)
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    optimizer = make_optimizer(cfg, model)
    state = parallel.TrainState.create(params, optimizer, model_state=model_state)
    return graphdef, parallel.replicate_on_mesh(state, mesh), optimizer


def load_config(workdir: Path) -> Config:
    """The configuration a run saved in its workdir."""

    def tuples(x: Any) -> Any:  # JSON turned the tuples into lists
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        return tuple(tuples(v) for v in x) if isinstance(x, list) else x

    return Config(**tuples(json.loads((workdir / "config.json").read_text())))


# ----------------------------------------------------------------------------- steps


def to_host(x: jax.Array) -> np.ndarray:
    """A global array as one NumPy array on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def make_predict(graphdef: Any, mesh: jax.sharding.Mesh) -> Any:
    """``predict(params, model_state, images, pixel_mask, sizes) -> detections`` (jitted)."""

    @jax.jit
    def predict(params, model_state, images, pixel_mask, sizes):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        outputs = model(normalise(images), pixel_mask)
        return models.detr_postprocess(outputs, sizes)

    return predict


def evaluate(cfg, predict, state, d: Data, mesh, val_batches) -> tuple[dict[str, float], dict]:
    """COCO box AP on the validation split; also returns the first batch's predictions."""
    records, first = [], None
    for batch in val_batches():
        rows = parallel.process_batch_slice(len(batch["images"]), mesh)
        inputs = parallel.shard_batch(
            {k: batch[k][rows] for k in ("images", "pixel_mask", "sizes")}, mesh
        )
        dets = predict(state.params, state.model_state, **inputs)
        dets = {k: to_host(v) for k, v in dets.items()}
        if first is None:
            first = {"pred": dets, "true": batch}
        records += data.detections_to_coco(
            batch["image_ids"],
            dets["boxes"],
            dets["scores"],
            dets["labels"],
            d.val.category_ids,
            sizes=batch["sizes"],
            valid=batch["valid"],
        )
    return data.coco_evaluate(d.val, records), first


def draw_first_batch(first: dict, class_names: tuple[str, ...], path: Path, cfg: Config) -> None:
    """Up to 16 images of the first evaluation batch: predictions against ground truth."""
    pred, true = first["pred"], first["true"]
    k = min(16, int(true["valid"].sum()))
    cxcy, wh = true["boxes"][:k, :, :2], true["boxes"][:k, :, 2:]
    scale = np.tile(true["sizes"][:k, None, ::-1], (1, 1, 2)).astype(np.float32)
    true_xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], -1) * scale
    detr_figures.draw_predictions(
        true["images"][:k],
        pred["boxes"][:k],
        pred["scores"][:k],
        pred["labels"][:k],
        true_xyxy,
        true["labels"][:k],
        true["mask"][:k],
        class_names,
        path,
        score_threshold=cfg.score_threshold,
    )


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--coco-dir", default=None, help="COCO root (preset coco_r50)")
    parser.add_argument("--workdir", default=None, help="default: runs/<preset>-seed<seed>")
    parser.add_argument("--fresh", action="store_true", help="ignore existing checkpoints")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any Config field, VALUE as JSON (e.g. --set lr=5e-4)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run that JAX discovers itself (TPU pods, SLURM)",
    )
    args = parser.parse_args(argv)
    cfg = PRESETS[args.preset]()
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in {f.name for f in dataclasses.fields(Config)}:
            parser.error(f"--set {item}: Config has no field {key!r}")
        parsed = json.loads(value) if value[:1] in "[{0123456789-.tfn" else value
        setattr(cfg, key, tuple(parsed) if isinstance(parsed, list) else parsed)
    for key in ("seed", "steps", "batch_size", "coco_dir"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    return cfg, args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    t_start = time.time()
    cfg, args = parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    else:
        parallel.initialize()  # a no-op unless started by `python -m jaxvision.launch`
    lead = jax.process_index() == 0
    workdir = Path(args.workdir or f"runs/{cfg.name}-seed{cfg.seed}")
    workdir.mkdir(parents=True, exist_ok=True)
    if lead:
        (workdir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    mesh = parallel.make_mesh()
    log = print if lead else (lambda *a, **k: None)
    log(
        f"preset {cfg.name}: {jax.device_count()} x {jax.devices()[0].platform} device(s), "
        f"{jax.process_count()} process(es), workdir {workdir}"
    )

    t0 = time.time()
    d = load_data(cfg, workdir)
    num_classes = len(d.class_names)
    cached = None
    if len(d.val) <= 5000:
        cached = list(
            data.coco_batches(
                d.val, cfg.eval_batch_size, max_boxes=cfg.max_boxes, buckets=cfg.buckets
            )
        )

    def val_batches() -> Iterator[dict]:
        if cached is not None:
            return iter(cached)
        return data.coco_batches(
            d.val, cfg.eval_batch_size, max_boxes=cfg.max_boxes, buckets=cfg.buckets
        )

    data_s = time.time() - t0
    log(
        f"data: {len(d.train['images']) if d.train else len(d.train_coco)} train / "
        f"{len(d.val)} val images, {num_classes} classes ({data_s:.1f} s)"
    )

    graphdef, state, optimizer = init_state(cfg, num_classes, mesh)
    num_params = sum(x.size for x in jax.tree.leaves(state.params))

    def loss_fn(params, model_state, batch, rng, axis_name):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.train()
        outputs = model(normalise(batch["images"]), batch["pixel_mask"])
        targets = {k: batch[k] for k in ("labels", "boxes", "mask")}
        loss, metrics = models.detr_loss(
            outputs,
            targets,
            num_classes=num_classes,
            axis_name=axis_name,
            **cfg.loss_kwargs,
        )
        _, _, new_model_state = nnx.split(model, nnx.Param, ...)
        return loss, (new_model_state, metrics)

    step_fn = parallel.data_parallel_step(loss_fn, optimizer, mesh)
    predict = make_predict(graphdef, mesh)
    rng = jax.random.key(cfg.seed)

    history: dict[str, list] = {"loss_steps": [], "losses": [], "eval_steps": [], "evals": []}
    ckpt = parallel.CheckpointManager(workdir / "checkpoints", max_to_keep=2)
    start = 0
    if args.fresh or ckpt.latest_step() is None:
        pass
    else:
        restored = ckpt.restore(state, rng=rng)
        state, start, history = restored.state, restored.step, restored.data_state["history"]
        log(f"resumed from the checkpoint of step {start}")

    log(
        f"model {cfg.model}: {num_params / 1e6:.2f} M parameters, {cfg.num_queries} queries; "
        f"batch {cfg.batch_size}, {cfg.steps} steps, lr {cfg.lr}"
    )
    bar = tqdm(
        total=cfg.steps,
        mininterval=2.0,
        initial=start,
        disable=not lead,
        unit="step",
        dynamic_ncols=True,
        file=sys.stdout,
    )
    batches = train_batches(cfg, d, mesh, start)
    t_train, window_t, window_start, compile_s = time.time(), time.time(), start, 0.0
    window_cpu = time.process_time()
    step_times: list[float] = []
    step_cpu_times: list[float] = []  # CPU seconds per step: what a loaded machine hides
    for i in range(start, cfg.steps):
        batch = parallel.shard_batch(next(batches), mesh)
        state, metrics = step_fn(state, batch, jax.random.fold_in(rng, i))
        if i == start:
            jax.block_until_ready(metrics)
            compile_s = time.time() - window_t
            window_t, window_start, window_cpu = time.time(), i + 1, time.process_time()
        done = i + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss = float(metrics["loss"])
            now = time.time()
            if done > window_start:
                step_times.append((now - window_t) / (done - window_start))
                step_cpu_times.append((time.process_time() - window_cpu) / (done - window_start))
                bar.set_postfix(
                    loss=f"{loss:.3f}",
                    ce=f"{float(metrics['loss_ce']):.3f}",
                    img_s=f"{cfg.batch_size / step_times[-1]:.0f}",
                )
            window_t, window_start, window_cpu = now, done, time.process_time()
            history["loss_steps"].append(done)
            history["losses"].append(loss)
        bar.update(1)
        if done % cfg.eval_every == 0 and done != cfg.steps:
            stats, _ = evaluate(cfg, predict, state, d, mesh, val_batches)
            history["eval_steps"].append(done)
            history["evals"].append(stats)
            if lead:
                bar.write(
                    f"step {done}: AP {stats['AP']:.3f}  AP50 {stats['AP50']:.3f}  "
                    f"AP75 {stats['AP75']:.3f}"
                )
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            ckpt.save(done, state, rng=rng, data_state={"history": history}, force=True)
        if done % cfg.eval_every == 0 or done % cfg.checkpoint_every == 0:
            # Evaluation and checkpoints do not count as step time.
            window_t, window_start, window_cpu = time.time(), done, time.process_time()
    bar.close()
    train_s = time.time() - t_train

    stats, first = evaluate(cfg, predict, state, d, mesh, val_batches)
    if not history["eval_steps"] or history["eval_steps"][-1] != cfg.steps:
        history["eval_steps"].append(cfg.steps)
        history["evals"].append(stats)
    ckpt.close()

    curve = workdir / "curves.png"
    grid = workdir / "predictions.png"
    if lead:
        detr_figures.plot_curves(
            history["loss_steps"],
            history["losses"],
            history["eval_steps"],
            history["evals"],
            curve,
            title=f"DETR on {cfg.name}, seed {cfg.seed}",
        )
        draw_first_batch(first, d.class_names, grid, cfg)
    minutes = (time.time() - t_start) / 60
    step_s = float(np.median(step_times)) if step_times else float("nan")
    result = {
        "AP": round(stats["AP"], 4),
        "AP50": round(stats["AP50"], 4),
        "AP75": round(stats["AP75"], 4),
        "AR100": round(stats["AR100"], 4),
        "minutes": round(minutes, 2),
        "preset": cfg.name,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "resumed_from": start,
        "step_s": round(step_s, 4),
        "step_cpu_s": round(float(np.median(step_cpu_times)), 4) if step_cpu_times else None,
        "cpu_minutes": round(time.process_time() / 60, 2),
        "images_per_s": round(cfg.batch_size / step_s, 1) if step_times else None,
        "compile_s": round(compile_s, 1),
        "data_s": round(data_s, 1),
        "train_s": round(train_s, 1),
        "params": int(num_params),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "curve": str(curve),
        "predictions": str(grid),
    }
    if lead:
        rows = [
            ("COCO AP", f"{stats['AP']:.3f}"),
            ("AP50", f"{stats['AP50']:.3f}"),
            ("AP75", f"{stats['AP75']:.3f}"),
            ("AR@100", f"{stats['AR100']:.3f}"),
            ("steps", f"{cfg.steps} (resumed at {start})"),
            ("step time", f"{step_s * 1000:.0f} ms ({result['images_per_s']} img/s)"),
            ("compile / data", f"{compile_s:.0f} s / {data_s:.0f} s"),
            ("wall time", f"{minutes:.1f} min"),
            ("parameters", f"{num_params:,}"),
            ("curve", str(curve)),
            ("predictions", str(grid)),
        ]
        width = max(len(r[0]) for r in rows)
        print("-" * 60)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
        print("-" * 60)
        print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
