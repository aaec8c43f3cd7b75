"""Trains the RetinaFace-style face detector on generated scenes; COCO box AP and landmark NME.

The default preset trains on 128 x 128 scenes of generated faces (plus real LFW crops as
box-only faces) on this CPU in at most ten minutes of training::

    PYTHONPATH=. python experiments/train_face_detector.py --workdir runs/facedet-seed0
    PYTHONPATH=. python experiments/train_face_detector.py --workdir runs/facedet-seed1 \
        --set seed=1

Evaluation on held-out scenes (other identities, other seeds): COCO AP / AP50 through
pycocotools with faces under ``min_face`` pixels marked ``iscrowd`` (ignored: neither
missed nor matched), and the landmark NME of the faces at least ``min_face`` wide that a
detection finds (IoU >= 0.5), normalised by the distance between the eye centres.
Writes ``metrics.jsonl``, ``curves.png``, ``detections.png`` and checkpoints into the
workdir; re-running the same command resumes. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxvision import boxes, data, models, parallel, train

FLIP = np.array([1, 0, 2, 4, 3])  # landmark order after a horizontal flip


@dataclasses.dataclass
class Config:
    """One flat configuration (``--set field=value`` overrides any field)."""

    seed: int = 0
    image_size: int = 128
    num_train: int = 3000
    num_val: int = 200
    num_identities: int = 300
    max_faces: int = 6
    face_sizes: tuple[float, float] = (12.0, 80.0)
    real_fraction: float = 0.15
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    fpn_width: int = 64
    anchor_sizes: tuple[tuple[float, ...], ...] = ((16.0, 24.0), (32.0, 48.0), (64.0, 96.0))
    classification: str = "focal"
    batch_size: int = 16
    steps: int = 1500
    max_train_minutes: float = 10.0  # training stops here even if `steps` is not reached
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    log_every: int = 25
    eval_every: int = 400
    checkpoint_every: int = 400
    min_face: float = 16.0
    score_threshold: float = 0.5  # for the picture only; AP uses every detection


def build_scenes(cfg: Config, directory: Path) -> dict[str, np.ndarray]:
    """Generated train / val scenes, cached in ``directory`` (rebuilt when options change)."""
    options = {
        k: getattr(cfg, k)
        for k in (
            "image_size",
            "num_train",
            "num_val",
            "num_identities",
            "max_faces",
            "face_sizes",
            "real_fraction",
        )
    }

    def build(out: Path) -> None:
        ids = data.sample_identities(cfg.num_identities, seed=1234)
        # Validation: the last fifth of the identities, other scene seeds.
        split = cfg.num_identities * 4 // 5
        parts = {
            "train": (cfg.num_train, (0, split), 1),
            "val": (cfg.num_val, (split, cfg.num_identities), 2),
        }
        for name, (n, id_range, seed) in parts.items():
            scenes = data.generate_face_scenes(
                n,
                ids,
                size=cfg.image_size,
                faces_per_scene=(0, cfg.max_faces),
                face_sizes=cfg.face_sizes,
                real_fraction=cfg.real_fraction,
                identity_range=id_range,
                seed=seed,
            )
            t = data.pad_faces(scenes.annotations, cfg.max_faces)
            np.savez_compressed(
                out / f"{name}.npz",
                images=(scenes.images * 255).round().astype(np.uint8),
                boxes=t.boxes,
                landmarks=t.landmarks,
                valid=t.valid,
                landmark_valid=t.landmark_valid,
            )

    folder = train.derived_dataset(directory, options, build)
    return {name: dict(np.load(folder / f"{name}.npz")) for name in ("train", "val")}


def train_batches(split: dict[str, np.ndarray], cfg: Config, start: int):
    """Endless shuffled batches with random horizontal flips; deterministic per step."""
    n, size = len(split["images"]), cfg.image_size
    step = start
    while True:
        rng = np.random.default_rng((cfg.seed, step))
        idx = rng.choice(n, cfg.batch_size, replace=False)
        images = split["images"][idx].astype(np.float32) / 255
        b, lm = split["boxes"][idx].copy(), split["landmarks"][idx].copy()
        flip = rng.uniform(size=cfg.batch_size) < 0.5
        images[flip] = images[flip, :, ::-1]
        b[flip] = np.stack(
            [size - b[flip][..., 2], b[flip][..., 1], size - b[flip][..., 0], b[flip][..., 3]], -1
        )
        lm_f = lm[flip][:, :, FLIP]
        lm_f[..., 0] = size - lm_f[..., 0]
        lm[flip] = lm_f
        yield {
            "images": images,
            "boxes": b,
            "landmarks": lm,
            "valid": split["valid"][idx],
            "landmark_valid": split["landmark_valid"][idx],
        }
        step += 1


def coco_ground_truth(split: dict[str, np.ndarray], min_face: float) -> dict[str, Any]:
    """The val faces as a COCO dict; faces under ``min_face`` px are ``iscrowd`` (ignored)."""
    images, annotations = [], []
    size = split["images"].shape[1]
    for i in range(len(split["images"])):
        images.append({"id": i, "width": size, "height": size})
        for b in split["boxes"][i][split["valid"][i]]:
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [float(b[0]), float(b[1]), w, h],
                    "area": w * h,
                    "iscrowd": int(min(w, h) < min_face),
                }
            )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}


def landmark_nme(det: models.FaceDetections, split, min_face: float) -> tuple[float, float]:
    """Mean NME (eye-centre distance) of the found faces >= ``min_face``, and the found share."""
    errors, total = [], 0
    for i in range(len(split["images"])):
        n = int(det.count[i])
        pred_boxes, pred_lm = np.asarray(det.boxes[i, :n]), np.asarray(det.landmarks[i, :n])
        for g in np.flatnonzero(split["valid"][i] & split["landmark_valid"][i]):
            b = split["boxes"][i, g]
            if min(b[2] - b[0], b[3] - b[1]) < min_face:
                continue
            total += 1
            if n == 0:
                continue
            ious = np.asarray(boxes.box_iou(b[None], pred_boxes))[0]
            j = int(np.argmax(ious))  # detections are sorted by score: ties go to the best
            if ious[j] < 0.5:
                continue
            gt = split["landmarks"][i, g]
            iod = np.linalg.norm(gt[0] - gt[1])
            errors.append(np.linalg.norm(pred_lm[j] - gt, axis=-1).mean() / iod)
    return float(np.mean(errors)) if errors else float("nan"), len(errors) / max(total, 1)


def make_predict(graphdef):
    @jax.jit
    def predict(params, model_state, images, anchors):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.eval()
        return models.face_detector_postprocess(model(images), anchors, max_detections=50)

    return predict


def evaluate(predict, state, split, gt, cfg: Config, anchors) -> tuple[dict, Any]:
    parts = []
    for lo in range(0, len(split["images"]), 50):
        images = jnp.asarray(split["images"][lo : lo + 50], jnp.float32) / 255
        parts.append(jax.device_get(predict(state.params, state.model_state, images, anchors)))
    det = models.FaceDetections(*(np.concatenate(x) for x in zip(*parts, strict=True)))
    records = data.detections_to_coco(
        np.arange(len(det.count)),
        det.boxes,
        det.scores,
        np.zeros(det.scores.shape, int),
        np.array([1]),
    )
    stats = data.coco_evaluate(gt, records)
    nme, found = landmark_nme(det, split, cfg.min_face)
    return {
        "AP": stats["AP"],
        "AP50": stats["AP50"],
        "AP75": stats["AP75"],
        "NME": nme,
        "landmark_found": found,
    }, det


def build_model(cfg: Config) -> tuple[Any, Any, Any, jax.Array]:
    """The detector of ``cfg`` split into ``(graphdef, params, model_state)``, and its anchors."""
    model_cfg = models.FaceDetectorConfig(
        widths=cfg.widths, fpn_width=cfg.fpn_width, anchor_sizes=cfg.anchor_sizes
    )
    model = models.FaceDetector(model_cfg, rngs=nnx.Rngs(cfg.seed))
    anchors = model.anchors(cfg.image_size)
    graphdef, params, model_state = nnx.split(model, nnx.Param, nnx.BatchStat)
    return graphdef, params, model_state, anchors


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """AdamW with warm-up and cosine decay, gradients clipped at a global norm of 5."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, min(cfg.warmup_steps, cfg.steps // 2), cfg.steps, cfg.lr * 0.02
    )
    return optax.chain(
        optax.clip_by_global_norm(5.0), optax.adamw(schedule, weight_decay=cfg.weight_decay)
    )


def make_loss_fn(graphdef, anchors, cfg: Config):
    def loss_fn(params, model_state, batch, rng, axis_name):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.train()
        targets = models.FaceTargets(
            batch["boxes"], batch["landmarks"], batch["valid"], batch["landmark_valid"]
        )
        terms = models.face_detector_loss(
            model(batch["images"]), targets, anchors, classification=cfg.classification
        )
        metrics = {
            "loss": terms.total,
            "cls": terms.classification,
            "box": terms.box,
            "landmarks": terms.landmarks,
        }
        return terms.total, (nnx.state(model, nnx.BatchStat), metrics)

    return loss_fn


def main(argv=None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--set", action="append", default=[], help="field=value")
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--data-dir", default="runs/face_scenes")
    args = p.parse_args(argv)
    cfg = train.override(Config(), args.set)
    run = train.Run.open(args.workdir, cfg, fresh=args.fresh)
    timer = train.Timer()
    with timer("data"):
        splits = build_scenes(cfg, Path(args.data_dir))
    gt = coco_ground_truth(splits["val"], cfg.min_face)

    graphdef, params, model_state, anchors = build_model(cfg)
    optimizer = make_optimizer(cfg)
    mesh = parallel.make_mesh()
    state = parallel.replicate(
        parallel.TrainState.create(params, optimizer, model_state=model_state), mesh
    )
    step_fn = parallel.data_parallel_step(make_loss_fn(graphdef, anchors, cfg), optimizer, mesh)
    predict = make_predict(graphdef)
    ckpt = parallel.CheckpointManager(run.workdir / "checkpoints", max_to_keep=2)
    start, trained_s = 0, 0.0
    if run.resumable and ckpt.latest_step() is not None:
        restored = ckpt.restore(state, fallback=True, log=print)
        state, start = restored.state, restored.step
        trained_s = float(restored.data_state.get("trained_s", 0.0))
    writer = train.MetricsWriter(run.workdir / "metrics.jsonl", resume_step=start or None)
    print(
        f"{len(splits['train']['images'])} train / {len(splits['val']['images'])} val scenes, "
        f"{sum(x.size for x in jax.tree.leaves(params)) / 1e6:.2f} M parameters, "
        f"{anchors.shape[0]} anchors"
    )

    batches = train_batches(splits["train"], cfg, start)
    done = start
    for i in range(start, cfg.steps):
        if trained_s >= 60 * cfg.max_train_minutes:
            print(f"time limit: stopping at step {i} after {trained_s / 60:.1f} min")
            break
        t0 = time.perf_counter()
        with timer("data"):
            batch = parallel.shard_batch(next(batches), mesh)
        with timer("compile" if i == start else "step"):
            state, metrics = step_fn(state, batch, jax.random.key(i))
            values = train.check_finite(i + 1, metrics)
        trained_s += time.perf_counter() - t0
        done = i + 1
        if train.every(done, cfg.log_every, total=cfg.steps):
            writer.write(done, **values, minutes=trained_s / 60)
            print(
                f"step {done}: loss {values['loss']:.3f} (cls {values['cls']:.3f}, box "
                f"{values['box']:.3f}, lm {values['landmarks']:.3f}), {trained_s / 60:.1f} min"
            )
        if train.every(done, cfg.eval_every, total=cfg.steps) and done != cfg.steps:
            with timer("eval"):
                stats, _ = evaluate(predict, state, splits["val"], gt, cfg, anchors)
            writer.write(done, **stats)
            print(f"step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
        if train.every(done, cfg.checkpoint_every, total=cfg.steps):
            ckpt.save(done, state, data_state={"trained_s": trained_s}, force=True)
    if ckpt.latest_step() != done:  # stopped by the time limit
        ckpt.save(done, state, data_state={"trained_s": trained_s}, force=True)
    with timer("eval"):
        stats, det = evaluate(predict, state, splits["val"], gt, cfg, anchors)
    writer.write(done, **stats)
    ckpt.close()
    draw(run.workdir, writer, splits["val"], det, cfg)
    run.close()
    summary = {
        "seed": cfg.seed,
        "steps": done,
        "train_minutes": round(trained_s / 60, 2),
        **{k: round(v, 4) for k, v in stats.items()},
        **timer.summary(),
    }
    train.print_summary(summary)
    return summary


def draw(workdir: Path, writer, split, det, cfg: Config) -> None:
    """``curves.png`` (loss, AP50, NME against steps) and ``detections.png`` (8 val scenes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    for a, name in zip(ax, ("loss", "AP50", "NME"), strict=True):
        steps, values = writer.series(name)
        a.plot(steps, values, "o-" if name != "loss" else "-")
        a.set_xlabel("step")
        a.set_title(name)
    fig.suptitle(f"face detector, seed {cfg.seed}")
    fig.tight_layout()
    fig.savefig(workdir / "curves.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    for i, a in enumerate(axes.flat):
        a.axis("off")
        if i >= len(split["images"]):
            continue
        a.imshow(split["images"][i])
        keep = np.asarray(det.scores[i]) > cfg.score_threshold
        for b, lm in zip(
            np.asarray(det.boxes[i])[keep], np.asarray(det.landmarks[i])[keep], strict=True
        ):
            a.add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="lime"))
            a.plot(lm[:, 0], lm[:, 1], "r.", markersize=4)
    fig.tight_layout()
    fig.savefig(workdir / "detections.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main, errors=(parallel.CheckpointError,)))
