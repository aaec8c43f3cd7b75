"""Trains a top-down pose network (heatmap, integral, SimCC or RLE head), evaluates COCO
keypoint AP with pycocotools, and draws predicted skeletons against the ground truth.

The default preset trains the integral (soft-argmax) SimpleBaseline on generated figures
(``data.keypoints_dataset``, exported and read back as COCO person keypoints) on this CPU
in a few minutes::

    python experiments/train_pose.py --workdir runs/pose-integral
    python experiments/train_pose.py --workdir runs/pose-heatmap --preset heatmap
    python experiments/train_pose.py --workdir runs/pose-simcc --set input_h=128 --set input_w=96

Real COCO plugs in with a path (``person_keypoints_{train,val}2017.json`` and the image
folders under it); the ResNet-50 preset is SimpleBaseline's 256 x 192 recipe::

    python experiments/train_pose.py --workdir runs/coco --preset coco_r50 --set coco_dir=/data/coco

Re-running the same command resumes from the last checkpoint in ``--workdir``; the last
line printed is one JSON object with the final metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxvision import data, keypoints, losses, metrics, models, parallel, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pose_config import PRESETS, Config  # noqa: E402

# ----------------------------------------------------------------------------- data


def load_splits(cfg: Config, workdir: Path) -> tuple[Path, Path]:
    """COCO annotation files of the train and val splits (generated ones exported first)."""
    if cfg.coco_dir:
        root = Path(cfg.coco_dir)
        return (
            root / "annotations" / "person_keypoints_train2017.json",
            root / "annotations" / "person_keypoints_val2017.json",
        )
    options = {
        "train": cfg.train_images,
        "val": cfg.val_images,
        "size": cfg.image_size,
        "seed": cfg.seed,
    }

    def build(folder: Path) -> None:
        for split, n in (("train", cfg.train_images), ("val", cfg.val_images)):
            ds = data.keypoints_dataset(n, image_size=cfg.image_size, split=split, seed=cfg.seed)
            data.export_coco_keypoints(ds, folder / split)

    folder = train.derived_dataset(Path(cfg.data_dir or workdir / "data"), options, build)
    return folder / "train" / "annotations.json", folder / "val" / "annotations.json"


def image_dir(annotation: Path, cfg: Config) -> Path:
    if cfg.coco_dir:
        return Path(cfg.coco_dir) / annotation.stem.replace("person_keypoints_", "")
    return annotation.parent / "images"


@functools.lru_cache(maxsize=4)
def load_crops(annotation: Path, images: Path, size: tuple[int, int]) -> data.TopDownCrops:
    """One crop per person; cached, so a table of runs in one process crops once."""
    return data.topdown_crops(data.read_coco_keypoints(annotation, images), size)


def normalise(images: jax.Array) -> jax.Array:
    return (images - 0.45) / 0.25


# ----------------------------------------------------------------------------- model


def pose_config(cfg: Config) -> models.PoseConfig:
    size = (cfg.input_h, cfg.input_w)
    extra = {"deconv_layers": cfg.deconv_layers} if cfg.deconv_layers else {}
    if cfg.model == "resnet50":
        return models.PoseConfig(
            head=cfg.head, input_size=size, integral_debias=cfg.integral_debias, **extra
        )
    return models.pose_small_config(cfg.head, size, integral_debias=cfg.integral_debias, **extra)


def init_state(cfg: Config, pcfg: models.PoseConfig, mesh):
    model = models.PoseModel(pcfg, rngs=nnx.Rngs(cfg.seed))
    model.eval()
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    warmup = max(1, min(cfg.warmup_steps, cfg.steps // 2))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1), cfg.lr * 0.02
    )
    optimizer = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    state = parallel.TrainState.create(params, optimizer, model_state=model_state)
    return graphdef, parallel.replicate_on_mesh(state, mesh), optimizer


def make_loss(cfg: Config, pcfg: models.PoseConfig, graphdef):
    def loss_fn(params, model_state, batch, rng, axis_name):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.train()
        out = model(normalise(batch["images"]))
        loss = models.pose_loss(
            out,
            batch["keypoints"],
            batch["weights"],
            pcfg,
            heatmap_sigma=cfg.heatmap_sigma,
            simcc_sigma=cfg.simcc_sigma,
            flow_log_prob=model.flow if pcfg.head == "rle" else None,
            integral_heatmap_weight=cfg.integral_heatmap_weight,
        )
        terms = {}
        if pcfg.head == "integral" and cfg.integral_heatmap_weight:
            s = pcfg.map_stride
            kp, w = batch["keypoints"], batch["weights"]
            terms["l1"] = losses.integral_l1_loss(out["keypoints"] / s, kp / s, w)
        model.eval()
        _, _, new_state = nnx.split(model, nnx.Param, ...)
        return loss, (new_state, terms)

    return loss_fn


# ----------------------------------------------------------------------------- evaluation


def predict_crops(graphdef, state, crops, pcfg, refine: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[P, K, 2]`` in image pixels and scores ``[P, K]`` for every crop."""

    @jax.jit
    def predict(params, model_state, images, matrices):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        xy, score = models.pose_decode(model(normalise(images)), pcfg, refine=refine)
        return keypoints.keypoints_from_crop(xy, matrices), score

    out_xy, out_score = [], []
    for batch in data.topdown_batches(crops, 100, shuffle=False, flip=False):
        idx = batch["index"]
        xy, score = predict(state.params, state.model_state, batch["images"], crops.matrices[idx])
        out_xy.append(np.asarray(xy))
        out_score.append(np.asarray(score))
    return np.concatenate(out_xy), np.concatenate(out_score)


def evaluate(xy, score, crops, val_json: Path) -> dict[str, float]:
    """COCO keypoint AP (pycocotools), PCK@0.05 of the box size and the mean error in px."""
    records = data.keypoints_to_coco(crops.image_ids, xy, score.mean(-1), keypoint_scores=score)
    stats = data.coco_keypoints_evaluate(val_json, records)
    truth = val_truth(crops)
    vis = truth[..., 2]
    size = crops.boxes[:, 2:].max(-1)
    pck = metrics.keypoint_pck(xy, truth[..., :2], vis, size, threshold=0.05)
    epe = metrics.keypoint_epe(xy, truth[..., :2], vis)
    return {
        "AP": stats["AP"],
        "AP50": stats["AP50"],
        "AP75": stats["AP75"],
        "PCK@0.05": float(pck),
        "error_px": float(epe),
    }


def val_truth(crops) -> np.ndarray:
    """Ground-truth keypoints in image pixels, mapped back from the crops."""
    xy = np.asarray(keypoints.keypoints_from_crop(crops.keypoints[..., :2], crops.matrices))
    return np.concatenate([xy, crops.keypoints[..., 2:]], -1)


def draw(crops, xy_image, path: Path, n: int = 8) -> None:
    """The first ``n`` val crops: ground-truth skeleton in white, prediction in yellow."""
    from PIL import Image, ImageDraw

    scale = 4
    pred = np.asarray(keypoints.keypoints_to_crop(xy_image[:n], crops.matrices[:n]))
    h, w = crops.images.shape[1:3]
    canvas = Image.new("RGB", (w * scale * n, h * scale))
    for i in range(min(n, len(crops))):
        im = Image.fromarray(crops.images[i]).resize((w * scale, h * scale), Image.NEAREST)
        d = ImageDraw.Draw(im)
        for pts, colour, only_labelled in (
            (crops.keypoints[i], (255, 255, 255), True),
            (pred[i], (255, 255, 0), False),
        ):
            for a, b in keypoints.COCO_SKELETON:
                if only_labelled and (pts[a][2] == 0 or pts[b][2] == 0):
                    continue
                d.line([tuple(pts[a][:2] * scale), tuple(pts[b][:2] * scale)], fill=colour, width=2)
        canvas.paste(im, (i * w * scale, 0))
    canvas.save(path)


# ----------------------------------------------------------------------------- main


def train_loop(cfg, state, step_fn, crops, run, timer) -> parallel.TrainState:
    mesh = parallel.make_mesh()
    ckpt = parallel.CheckpointManager(run.workdir / "checkpoints", max_to_keep=2)
    start = 0
    if run.resumable and ckpt.latest_step() is not None:
        restored = ckpt.restore(state, fallback=True, log=print)
        state, start = restored.state, restored.step
    writer = train.MetricsWriter(run.workdir / "metrics.jsonl", resume_step=start or None)
    per_epoch = len(crops) // cfg.batch_size
    epoch, skip = divmod(start, per_epoch)
    batches = None
    for i in range(start, cfg.steps):
        with timer("data"):
            if batches is None:
                batches = data.topdown_batches(
                    crops, cfg.batch_size, flip=cfg.flip, seed=cfg.seed, epoch=epoch
                )
                for _ in range(skip):
                    next(batches)
            batch = next(batches, None)
            if batch is None:
                epoch, batches = epoch + 1, None
                batches = data.topdown_batches(
                    crops, cfg.batch_size, flip=cfg.flip, seed=cfg.seed, epoch=epoch
                )
                batch = next(batches)
            batch.pop("index")
            batch = parallel.shard_batch(batch, mesh)
        with timer("compile" if i == start else "step"):
            state, m = step_fn(state, batch, jax.random.key(i))
            values = train.check_finite(i + 1, m)
        if train.every(i + 1, cfg.log_every, total=cfg.steps):
            writer.write(i + 1, **values)
            terms = " ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"step {i + 1}/{cfg.steps} {terms}", flush=True)
        if train.every(i + 1, cfg.checkpoint_every, total=cfg.steps):
            ckpt.save(i + 1, state)
    ckpt.close()
    return state


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--preset", choices=sorted(PRESETS), default="integral")
    p.add_argument("--set", action="append", default=[], help="field=value overrides")
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    cfg = train.override(dataclasses.replace(Config(), **PRESETS[args.preset]), args.set)
    run = train.Run.open(args.workdir, cfg, fresh=args.fresh)
    timer = train.Timer()
    with timer("data"):
        train_json, val_json = load_splits(cfg, run.workdir)
        pcfg = pose_config(cfg)
        size = pcfg.input_size
        train_crops = load_crops(train_json, image_dir(train_json, cfg), size)
        val_crops = load_crops(val_json, image_dir(val_json, cfg), size)
    mesh = parallel.make_mesh()
    graphdef, state, optimizer = init_state(cfg, pcfg, mesh)
    step_fn = parallel.data_parallel_step(make_loss(cfg, pcfg, graphdef), optimizer, mesh)
    t0 = time.time()
    state = train_loop(cfg, state, step_fn, train_crops, run, timer)
    train_minutes = (time.time() - t0) / 60
    refines = ("none", "dark") if cfg.head == "heatmap" else ("dark",)
    summary: dict[str, Any] = {
        "head": cfg.head,
        "input": f"{size[0]}x{size[1]}",
        "map": "x".join(map(str, pcfg.map_size)),
    }
    with timer("eval"):
        for refine in refines:
            xy, score = predict_crops(graphdef, state, val_crops, pcfg, refine)
            tag = "" if len(refines) == 1 else f"{refine}_"
            summary |= {
                tag + k: round(v, 4) for k, v in evaluate(xy, score, val_crops, val_json).items()
            }
    draw(val_crops, xy, run.workdir / "predictions.png")
    params = sum(x.size for x in jax.tree.leaves(state.params))
    step_s = timer.median("step")
    summary |= {
        "params": int(params),
        "step_ms": round(step_s * 1e3, 1),
        "images_per_s": round(cfg.batch_size / step_s, 1),
        "train_minutes": round(train_minutes, 2),
        "steps": cfg.steps,
        "predictions": str(run.workdir / "predictions.png"),
        **timer.summary(),
    }
    run.close()
    train.print_summary(summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main, errors=(parallel.CheckpointError,)))
