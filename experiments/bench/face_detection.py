"""Face detector post-processing: one jitted batch call against the peers' per-image NumPy.

Run::

    PYTHONPATH=. python experiments/bench/face_detection.py [--batch 16] [--repeats 7]

Case: a batch of 640 x 640 images, 16,800 RetinaFace anchors each. The raw outputs look
like a trained detector's: background logits ~ N(-7, 1.5) (about 2% of the anchors pass the
0.02 score threshold), plus 20 faces per image, each a cluster of 30 anchors around one box
with high scores and jittered deltas, so that NMS has real work to do. Settings are
RetinaFace's evaluation ones: score > 0.02, the 5,000 best, NMS at IoU 0.4, keep 750.

- jaxvision: ``models.face_detector_postprocess`` on the whole batch, one jitted call
  (decode boxes and landmarks, top-k, ``boxes.nms`` under vmap, fixed-size result).
- peer: the post-processing of the RetinaFace repos (biubug6's ``detect.py``, insightface's
  ``retinaface.py``) as they run it, image by image on the host, written here in NumPy:
  decode every anchor, drop low scores, argsort, top-k, the ``py_cpu_nms`` loop, keep.

Each time is the median of ``--repeats`` runs after a warm-up (compilation for jaxvision),
synchronised with ``block_until_ready``. The ratio is peer / jaxvision (above 1: jaxvision
is faster). Both sides must agree on the number of detections of every image.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxvision import boxes, models

THRESHOLD, IOU, TOP_K, KEEP = 0.02, 0.4, 5000, 750


def median_ms(fn: Callable[[], object], sync: Callable[[object], object], repeats: int) -> float:
    sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def fake_outputs(rng: np.random.Generator, anchors: np.ndarray, batch: int, faces: int = 20):
    """Raw outputs ``(logits [B, A], deltas [B, A, 4], landmark deltas [B, A, 5, 2])``."""
    a = anchors.shape[0]
    logits = rng.normal(-7, 1.5, (batch, a)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (batch, a, 4)).astype(np.float32)
    lm = rng.normal(0, 1, (batch, a, 5, 2)).astype(np.float32)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    for b in range(batch):
        for f in rng.choice(a, faces, replace=False):
            near = np.argsort(np.abs(centres - centres[f]).sum(1))[:30]
            logits[b, near] = rng.normal(2, 1.5, near.size)
    return logits, deltas, lm


def py_cpu_nms(dets: np.ndarray, thresh: float) -> list[int]:
    """Greedy NMS over ``dets [N, 5]`` (x1, y1, x2, y2, score), as in the RetinaFace repos.

    Without their ``+ 1`` in widths and heights (a pixel-count convention), so that the
    overlaps are the continuous IoU that torchvision and jaxvision use and the results
    can be compared; the cost is the same.
    """
    x1, y1, x2, y2, scores = dets.T
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1)
        h = np.maximum(0.0, yy2 - yy1)
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def numpy_postprocess(logits, deltas, lm, priors):
    """One image, RetinaFace style: ``priors [A, 4]`` cx, cy, w, h; variances 0.1, 0.2."""
    scores = 1 / (1 + np.exp(-logits))
    cxcy = priors[:, :2] + deltas[:, :2] * 0.1 * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(deltas[:, 2:] * 0.2)
    dets = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1)
    landms = (priors[:, None, :2] + lm * 0.1 * priors[:, None, 2:]).reshape(-1, 10)
    inds = np.where(scores > THRESHOLD)[0]
    dets, landms, scores = dets[inds], landms[inds], scores[inds]
    order = scores.argsort()[::-1][:TOP_K]
    dets, landms, scores = dets[order], landms[order], scores[order]
    dets = np.hstack((dets, scores[:, None])).astype(np.float32, copy=False)
    keep = py_cpu_nms(dets, IOU)
    return dets[keep][:KEEP], landms[keep][:KEEP]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    anchors = np.asarray(boxes.grid_anchors(args.size))
    priors = np.asarray(boxes.box_convert(anchors, "xyxy", "cxcywh"))
    logits, deltas, lm = fake_outputs(np.random.default_rng(0), anchors, args.batch)
    outputs = models.FaceDetectorOutput(*(jax.device_put(x) for x in (logits, deltas, lm)))
    device_anchors = jax.device_put(anchors)

    post = jax.jit(
        lambda o, a: models.face_detector_postprocess(
            o,
            a,
            score_threshold=THRESHOLD,
            iou_threshold=IOU,
            pre_nms_top_k=TOP_K,
            max_detections=KEEP,
        )
    )
    start = time.perf_counter()
    det = jax.block_until_ready(post(outputs, device_anchors))
    compile_s = time.perf_counter() - start

    def peer():
        return [numpy_postprocess(logits[b], deltas[b], lm[b], priors) for b in range(args.batch)]

    reference = peer()
    counts = [len(d) for d, _ in reference]
    if counts != np.asarray(det.count).tolist():
        raise SystemExit(f"detections differ: numpy {counts}, jaxvision {det.count.tolist()}")
    for b, (dets, _) in enumerate(reference):
        # Equal float32 scores are ordered by index in opposite directions (NumPy's reversed
        # argsort puts the higher index first), so the rows are compared as sets.
        ours = np.concatenate([det.boxes[b, : counts[b]], det.scores[b, : counts[b], None]], 1)
        key = lambda r: r[np.lexsort((r[:, 0], -r[:, 4]))]  # noqa: E731
        np.testing.assert_allclose(key(ours), key(dets), rtol=1e-5, atol=1e-2)
    t_jax = median_ms(lambda: post(outputs, device_anchors), jax.block_until_ready, args.repeats)
    t_np = median_ms(peer, lambda x: x, args.repeats)
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(
        f"batch {args.batch} x {args.size}^2, {anchors.shape[0]} anchors per image, "
        f"{int(np.mean(counts))} detections per image (mean), same boxes and scores"
    )
    print(f"{'':34s} {'ms / batch':>10s}")
    print(f"{'NumPy per image (RetinaFace)':34s} {t_np:10.1f}")
    print(f"{'jaxvision, one jitted batch call':34s} {t_jax:10.1f}   (compile {compile_s:.1f} s)")
    print(f"ratio NumPy / jaxvision: {t_np / t_jax:.2f}")


if __name__ == "__main__":
    main()
