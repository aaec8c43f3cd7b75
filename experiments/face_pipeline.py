"""The whole face system: detect -> align (5 landmarks) -> embed -> identify against a gallery.

Takes a trained detector (a workdir of ``experiments/train_face_detector.py``) and a trained
recogniser (a workdir of ``experiments/train_face.py``), both opened read-only through their
``config.json`` and checkpoints, and runs them on held-out generated scenes::

    PYTHONPATH=. python experiments/face_pipeline.py --workdir runs/face_pipeline \\
        --detector runs/facedet-seed0 --recogniser runs/face/arcface

What is held out: the gallery holds the recogniser's *test* identities (never seen by its
classifier) enrolled from a few generated portraits each (the mean of their embeddings);
the scenes show those identities, so the detector (trained on another draw of identities)
has not seen them either. Every generated face of at least ``min_face`` pixels in the
scenes is a probe; it counts as identified when the detection matching it (IoU >= 0.5,
score > ``score_threshold``) is named with its identity (nearest gallery entry by cosine).

The error is split stage by stage by substituting the ground truth:

1. ground-truth boxes and landmarks: only the recogniser can fail;
2. detected boxes, ground-truth landmarks: a face the detector misses is an error too;
3. fully detected: the crop is aligned on the detected landmarks (the real system).

It also reports COCO AP / AP50 and landmark NME of the detector on these scenes, the
end-to-end images/s of the jitted system (one call: detector, NMS, alignment of every
detection, embedding, nearest gallery entry), draws a scene with boxes, landmarks, aligned
crops and names (``pipeline.png``), and runs on scikit-image's ``data.astronaut()``
(``astronaut.png``). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_face  # noqa: E402
import train_face_detector  # noqa: E402

from jaxvision import boxes, data, face, geometry, metrics, models, ops, parallel, train  # noqa: E402


@dataclasses.dataclass
class Config:
    """One flat configuration (``--set field=value`` overrides any field)."""

    num_scenes: int = 200
    scene_size: int = 128
    faces_per_scene: tuple[int, int] = (1, 6)
    face_sizes: tuple[float, float] = (12.0, 80.0)
    real_fraction: float = 0.15  # LFW crops: faces of nobody in the gallery
    gallery_images: int = 5  # portraits enrolled per identity
    min_face: float = 16.0
    score_threshold: float = 0.5
    max_detections: int = 20
    supersample: int = 4  # probes are aligned at supersample x crop size, then averaged
    batch_size: int = 50
    seed: int = 0


# ----------------------------------------------------------------------------- loading
def read_config(workdir: Path, config_type: type) -> Any:
    """The configuration a run saved in its ``config.json`` (the harness's format)."""
    saved = json.loads((workdir / "config.json").read_text())
    return train.config_from_dict(config_type, saved["config"])


def load_detector(workdir: Path) -> tuple[Any, Any, Any, Any, int]:
    """``(config, graphdef, params, model_state, step)`` of a detector run, read-only."""
    cfg = read_config(workdir, train_face_detector.Config)
    graphdef, params, model_state, _ = train_face_detector.build_model(cfg)
    template = parallel.TrainState.create(
        params, train_face_detector.make_optimizer(cfg), model_state=model_state
    )
    with parallel.CheckpointManager(workdir / "checkpoints", read_only=True) as ckpt:
        restored = ckpt.restore(template)
    return cfg, graphdef, restored.state.params, restored.state.model_state, restored.step


def load_recogniser(workdir: Path) -> tuple[Any, Any, Any, Any]:
    """``(config, eval graphdef, params, batch statistics)`` of a train_face run, read-only."""
    cfg = read_config(workdir, train_face.Config)
    _, graph_eval, params, stats, _ = train_face.build(cfg, None)
    template = parallel.TrainState.create(params, train_face.optimizer(cfg), model_state=stats)
    with parallel.CheckpointManager(workdir / "checkpoints", read_only=True) as ckpt:
        restored = ckpt.restore(template)
    return cfg, graph_eval, restored.state.params, restored.state.model_state


# ----------------------------------------------------------------------------- stages
def aligned_crops(images: jax.Array, landmarks: jax.Array, size: int, k: int) -> jax.Array:
    """Faces ``[..., 5, 2]`` of ``images [..., H, W, C]`` onto the ``size`` ArcFace template.

    Aligned at ``k size`` pixels and averaged over ``k x k`` blocks (an anti-aliased
    downscale: a face detected at 80 px is reduced 5x). The ``k size`` template is the
    ``size`` one in the finer grid's pixel-centre coordinates, ``k x + (k - 1) / 2``.
    """
    dst = jnp.asarray(face.arcface_template(size) * k + (k - 1) / 2, jnp.float32)
    matrix = geometry.estimate_similarity(landmarks, jnp.broadcast_to(dst, landmarks.shape))
    fine = geometry.warp_affine(images, matrix, size * k)
    shape = fine.shape[:-3] + (size, k, size, k, fine.shape[-1])
    return fine.reshape(shape).mean(axis=(-4, -2))


_ALIGN = jax.jit(face.align_faces, static_argnums=2)
CHUNK = 256  # every embedding call outside the system has this batch: one compile


def embed_all(embed, crops: np.ndarray) -> np.ndarray:
    """``embed`` (jitted) over ``crops`` in zero-padded chunks of ``CHUNK``."""
    out = []
    for i in range(0, len(crops), CHUNK):
        part = crops[i:i + CHUNK]
        pad = np.zeros((CHUNK - len(part), *part.shape[1:]), part.dtype)
        out.append(np.asarray(embed(np.concatenate([part, pad])))[: len(part)])
    return np.concatenate(out)


def make_embed(graph_eval, params, stats):
    """insightface's evaluation embedding ``l2norm(f(x) + f(flip x))`` of ``[N, s, s, 3]``."""

    @jax.jit
    def embed(x):
        model = nnx.merge(graph_eval, params["backbone"], stats)
        return ops.l2_normalize(model(x) + model(x[:, :, ::-1]))

    return embed


def portraits(embed, rec_cfg, identities, labels: np.ndarray, seed: int) -> np.ndarray:
    """Embeddings of generated portraits, rendered and aligned as the training images."""
    raw = data.generate_faces(identities, labels, size=rec_cfg.render_size, seed=seed)
    crops = np.asarray(_ALIGN(raw.images, raw.landmarks, rec_cfg.crop_size)[0])
    return embed_all(embed, crops)


def enrol(embed, rec_cfg, identities, gallery_ids: np.ndarray, per_id: int, seed: int):
    """Gallery ``[G, D]``: the normalised mean embedding of ``per_id`` portraits each."""
    emb = portraits(embed, rec_cfg, identities, np.repeat(gallery_ids, per_id), seed)
    mean = emb.reshape(len(gallery_ids), per_id, -1).mean(1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True)


def make_system(det_graph, det_params, det_state, anchors, embed, gallery, crop: int,
                cfg: Config):
    """One jitted call: images ``[B, S, S, 3]`` -> detections, crops, names, similarities."""
    gallery = jnp.asarray(gallery)

    @jax.jit
    def system(images):
        model = nnx.merge(det_graph, det_params, det_state, copy=True)
        model.eval()
        det = models.face_detector_postprocess(
            model(images), anchors, max_detections=cfg.max_detections
        )
        crops = jax.vmap(lambda im, lm: aligned_crops(im, lm, crop, cfg.supersample))(
            images, det.landmarks)
        b, d = crops.shape[:2]
        emb = embed(crops.reshape(b * d, *crops.shape[2:]))
        sims = emb @ gallery.T
        return det, crops, sims.argmax(-1).reshape(b, d), sims.max(-1).reshape(b, d)

    return system


def identify_gt(embed, gallery, images, landmarks, owner, crop: int, k: int):
    """Names of ground-truth faces aligned on their ground-truth landmarks (stage 1)."""
    align = jax.jit(aligned_crops, static_argnums=(2, 3))
    crops = np.concatenate([
        np.asarray(align(images[owner[i:i + 200]], landmarks[i:i + 200], crop, k))
        for i in range(0, len(owner), 200)
    ])
    return (embed_all(embed, crops) @ gallery.T).argmax(-1)


def match(det_boxes: np.ndarray, det_scores: np.ndarray, gt_box: np.ndarray, thr: float):
    """Index of the best-scoring detection above ``thr`` with IoU >= 0.5, or -1."""
    keep = np.flatnonzero(det_scores > thr)
    if keep.size == 0:
        return -1
    ious = np.asarray(boxes.box_iou(gt_box[None], det_boxes[keep]))[0]
    ok = np.flatnonzero(ious >= 0.5)
    return int(keep[ok[0]]) if ok.size else -1  # detections are sorted by score


# ----------------------------------------------------------------------------- evaluation
def stage_table(scenes, det, names, gt_names, gallery_ids, cfg: Config) -> dict[str, Any]:
    """Identification accuracy of the three stages over the probes, and the false alarms."""
    correct = {"gt_boxes_gt_landmarks": [], "detected_boxes_gt_landmarks": [],
               "fully_detected": []}
    matched_dets, n = [], 0
    for i, ann in enumerate(scenes.annotations):
        count = int(det.count[i])
        db, ds = np.asarray(det.boxes[i, :count]), np.asarray(det.scores[i, :count])
        used = set()
        for g, who in enumerate(scenes.identities[i]):
            b = ann.boxes[g]
            j = match(db, ds, b, cfg.score_threshold)
            if j >= 0:
                used.add(j)
            if who < 0 or min(b[2] - b[0], b[3] - b[1]) < cfg.min_face:
                continue
            truth = int(np.flatnonzero(gallery_ids == who)[0])
            correct["gt_boxes_gt_landmarks"].append(gt_names[n] == truth)
            correct["detected_boxes_gt_landmarks"].append(j >= 0 and gt_names[n] == truth)
            correct["fully_detected"].append(j >= 0 and int(names[i, j]) == truth)
            n += 1
        matched_dets.append(used)
    false_alarms = sum(
        int(np.sum(np.asarray(det.scores[i, : int(det.count[i])]) > cfg.score_threshold))
        - len(matched_dets[i]) for i in range(len(matched_dets))
    )
    out = {k: float(np.mean(v)) for k, v in correct.items()}
    out["probes"] = n
    out["false_alarms"] = int(false_alarms)
    return out


def probes(scenes, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """``(scene index, landmarks)`` of every generated face >= ``min_face`` (stage order)."""
    owner, lms = [], []
    for i, ann in enumerate(scenes.annotations):
        for g, who in enumerate(scenes.identities[i]):
            b = ann.boxes[g]
            if who >= 0 and min(b[2] - b[0], b[3] - b[1]) >= cfg.min_face:
                owner.append(i)
                lms.append(ann.landmarks[g])
    return np.array(owner, int), np.array(lms, np.float32).reshape(-1, 5, 2)


def detector_scores(scenes, det, cfg: Config) -> dict[str, float]:
    """COCO AP / AP50 (pycocotools) and landmark NME on the pipeline's scenes."""
    t = data.pad_faces(scenes.annotations, max(len(a.boxes) for a in scenes.annotations))
    split = {"images": scenes.images, "boxes": t.boxes, "landmarks": t.landmarks,
             "valid": t.valid, "landmark_valid": t.landmark_valid}
    gt = train_face_detector.coco_ground_truth(split, cfg.min_face)
    records = data.detections_to_coco(np.arange(len(det.count)), det.boxes, det.scores,
                                      np.zeros(det.scores.shape, int), np.array([1]))
    stats = metrics.coco_evaluate(gt, records)
    nme, found = train_face_detector.landmark_nme(det, split, cfg.min_face)
    return {"AP": stats["AP"], "AP50": stats["AP50"], "NME": nme, "landmark_found": found}


def run_system(system, images: np.ndarray, batch: int):
    """The system over all images in batches; returns host outputs and images/s (2nd pass)."""
    def once():
        parts = [jax.device_get(system(jnp.asarray(images[i:i + batch])))
                 for i in range(0, len(images), batch)]
        det = models.FaceDetections(*(np.concatenate(x) for x in zip(*(p[0] for p in parts),
                                                                      strict=True)))
        return det, *(np.concatenate([p[k] for p in parts]) for k in (1, 2, 3))

    once()  # compiles (the last batch may be another shape)
    t0 = time.perf_counter()
    out = once()
    return out, len(images) / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- pictures
def draw_scenes(path: Path, scenes, det, crops, names, sims, gallery_ids, cfg: Config) -> None:
    """Four scenes with boxes, landmarks and names, and the aligned crops under each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = min(4, len(scenes.images))
    fig, ax = plt.subplots(2, max(shown, 1), figsize=(3.2 * shown, 6.0), squeeze=False)
    for c in range(shown):
        a = ax[0, c]
        a.imshow(scenes.images[c])
        keep = np.flatnonzero(det.scores[c] > cfg.score_threshold)
        for j in keep:
            b, lm = det.boxes[c, j], det.landmarks[c, j]
            a.add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="lime"))
            a.plot(lm[:, 0], lm[:, 1], "r.", markersize=3)
            a.text(b[0], b[1] - 1, f"id {gallery_ids[names[c, j]]} ({sims[c, j]:.2f})",
                   color="yellow", fontsize=6)
        truth = [int(w) for w in scenes.identities[c] if w >= 0]
        a.set_title("truth: " + ", ".join(map(str, truth)), fontsize=7)
        strip = [np.clip(crops[c, j], 0, 1) for j in keep] or [np.zeros((8, 8, 3))]
        ax[1, c].imshow(np.concatenate(strip, axis=1))
        ax[1, c].set_title("aligned crops, left to right", fontsize=7)
        for a in ax[:, c]:
            a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def astronaut(path: Path, system, det_size: int, gallery_ids, cfg: Config) -> list[dict]:
    """Runs the system on ``skimage.data.astronaut()`` resized to the detector's scene size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage import data as skdata
    from skimage import transform

    image = transform.resize(skdata.astronaut() / 255.0, (det_size, det_size),
                             anti_aliasing=True).astype(np.float32)
    # Tiled to the scenes' batch size: the system compiled for the scenes runs it.
    batch = jnp.broadcast_to(jnp.asarray(image), (cfg.batch_size, *image.shape))
    det, crops, names, sims = jax.device_get(system(batch))
    found = [
        {"box": [round(float(v), 1) for v in det.boxes[0, j]],
         "score": round(float(det.scores[0, j]), 3),
         "nearest_gallery_id": int(gallery_ids[names[0, j]]),
         "similarity": round(float(sims[0, j]), 3)}
        for j in range(min(int(det.count[0]), 5))
    ]
    fig, ax = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [3, 2]})
    ax[0].imshow(image)
    for j, f in enumerate(found):
        b = det.boxes[0, j]
        style = "-" if f["score"] > cfg.score_threshold else ":"
        ax[0].add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, color="lime",
                                      linestyle=style))
        ax[0].plot(det.landmarks[0, j, :, 0], det.landmarks[0, j, :, 1], "r.", markersize=3)
        ax[0].text(b[0], b[1] - 1, f"{f['score']:.2f}", color="yellow", fontsize=7)
    ax[0].set_title(f"astronaut at {det_size} px: top {len(found)} detections "
                    f"(solid: score > {cfg.score_threshold})", fontsize=8)
    strip = [np.clip(crops[0, j], 0, 1) for j in range(len(found))] or [np.zeros((8, 8, 3))]
    ax[1].imshow(np.concatenate(strip, axis=1))
    ax[1].set_title("their aligned crops", fontsize=8)
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return found


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--detector", required=True, help="a train_face_detector.py workdir")
    p.add_argument("--recogniser", required=True, help="a train_face.py workdir")
    p.add_argument("--set", action="append", default=[], help="field=value")
    args = p.parse_args(argv)
    cfg = train.override(Config(), args.set)
    run = train.Run.open(args.workdir, cfg, fresh=True, overwrite=True)
    timer = train.Timer()
    det_cfg, det_graph, det_params, det_state, det_step = load_detector(Path(args.detector))
    rec_cfg, graph_eval, rec_params, rec_stats = load_recogniser(Path(args.recogniser))
    embed = make_embed(graph_eval, rec_params, rec_stats)
    first = rec_cfg.train_identities  # the recogniser's held-out identities
    gallery_ids = np.arange(first, first + rec_cfg.test_identities)
    with timer("data"):
        ids = data.sample_identities(first + rec_cfg.test_identities, seed=rec_cfg.seed,
                                     spread=rec_cfg.identity_spread)
        gallery = enrol(embed, rec_cfg, ids, gallery_ids, cfg.gallery_images, cfg.seed + 100)
        # The recogniser alone, in its own domain: other portraits of the gallery identities.
        probe_labels = np.repeat(np.arange(len(gallery_ids)), 2)
        portrait_names = (portraits(embed, rec_cfg, ids, gallery_ids[probe_labels],
                                    cfg.seed + 300) @ gallery.T).argmax(1)
        scenes = data.generate_face_scenes(
            cfg.num_scenes, ids, size=cfg.scene_size, faces_per_scene=cfg.faces_per_scene,
            face_sizes=cfg.face_sizes, real_fraction=cfg.real_fraction,
            identity_range=(first, first + rec_cfg.test_identities), seed=cfg.seed + 200)
        # As the detector's training scenes: stored as 8-bit images.
        scenes = scenes._replace(images=(scenes.images * 255).round().astype(np.float32) / 255)
    anchors = nnx.merge(det_graph, det_params, det_state).anchors(cfg.scene_size)
    system = make_system(det_graph, det_params, det_state, anchors, embed, gallery,
                         rec_cfg.crop_size, cfg)
    with timer("system"):
        (det, crops, names, sims), images_per_s = run_system(system, scenes.images,
                                                             cfg.batch_size)
    with timer("stages"):
        owner, lms = probes(scenes, cfg)
        gt_names = identify_gt(embed, gallery, scenes.images, lms, owner, rec_cfg.crop_size,
                               cfg.supersample)
        table = stage_table(scenes, det, names, gt_names, gallery_ids, cfg)
        detection = detector_scores(scenes, det, cfg)
    draw_scenes(run.workdir / "pipeline.png", scenes, det, crops, names, sims, gallery_ids, cfg)
    found = astronaut(run.workdir / "astronaut.png", system, cfg.scene_size, gallery_ids, cfg)
    print("astronaut (top detections):")
    for f in found:
        print("  ", f)
    run.close()
    summary = {"detector_step": det_step, "gallery": len(gallery_ids),
               "portraits": float(np.mean(portrait_names == probe_labels)), **table,
               **{k: round(v, 4) for k, v in detection.items()},
               "images_per_s": round(images_per_s, 2),
               "astronaut_best_score": found[0]["score"] if found else 0.0,
               **timer.summary()}
    (run.workdir / "summary.json").write_text(json.dumps(summary, indent=1))
    train.print_summary(summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main, errors=(parallel.CheckpointError,)))
