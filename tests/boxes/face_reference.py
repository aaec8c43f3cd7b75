"""Float64 NumPy transcriptions for the face detector: priors, coders, assignment, NMS.

Written from the definitions (SSD eq. 2, RetinaFace's ``PriorBox`` loops and matching
rule, the ``py_cpu_nms`` greedy loop), one element at a time where that is clearer.
"""

import itertools

import numpy as np


def prior_boxes(height, width, strides, sizes):
    """Anchors as nested loops (level, row, column, size), ``cx, cy, s`` -> ``xyxy``."""
    out = []
    for stride, level in zip(strides, sizes, strict=True):
        for i, j in itertools.product(range(height // stride), range(width // stride)):
            for s in level:
                cx, cy = (j + 0.5) * stride, (i + 0.5) * stride
                out.append([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])
    return np.array(out, np.float64).reshape(-1, 4)


def centre_form(b):
    b = np.asarray(b, np.float64)
    return (
        (b[..., 0] + b[..., 2]) / 2,
        (b[..., 1] + b[..., 3]) / 2,
        b[..., 2] - b[..., 0],
        b[..., 3] - b[..., 1],
    )


def encode_boxes(boxes, anchors, v0=0.1, v1=0.2):
    bx, by, bw, bh = centre_form(boxes)
    ax, ay, aw, ah = centre_form(anchors)
    return np.stack(
        [(bx - ax) / (v0 * aw), (by - ay) / (v0 * ah), np.log(bw / aw) / v1, np.log(bh / ah) / v1],
        -1,
    )


def decode_boxes(deltas, anchors, v0=0.1, v1=0.2):
    d = np.asarray(deltas, np.float64)
    ax, ay, aw, ah = centre_form(anchors)
    cx, cy = ax + d[..., 0] * v0 * aw, ay + d[..., 1] * v0 * ah
    w, h = aw * np.exp(d[..., 2] * v1), ah * np.exp(d[..., 3] * v1)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def encode_landmarks(points, anchors, v0=0.1):
    ax, ay, aw, ah = centre_form(anchors)
    p = np.asarray(points, np.float64)
    return np.stack(
        [
            (p[..., 0] - ax[..., None]) / (v0 * aw[..., None]),
            (p[..., 1] - ay[..., None]) / (v0 * ah[..., None]),
        ],
        -1,
    )


def iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assign(anchors, gt, valid, pos=0.35, neg=0.35, min_best=0.2):
    """The documented rule, anchor by anchor: (labels, matched) with -1 for no match."""
    a_n = len(anchors)
    ious = np.array(
        [[iou(g, a) if v else -1.0 for a in anchors] for g, v in zip(gt, valid, strict=True)]
    )
    ious = ious.reshape(len(gt), a_n)
    claimed = {}
    for g in range(len(gt)):
        if not valid[g]:
            continue
        best = int(np.argmax(ious[g]))
        if ious[g, best] >= min_best and (
            best not in claimed or ious[g, best] > ious[claimed[best], best]
        ):
            claimed[best] = g
    labels, matched = np.zeros(a_n, int), np.full(a_n, -1)
    for a in range(a_n):
        if a in claimed:
            labels[a], matched[a] = 1, claimed[a]
            continue
        if len(gt) == 0:
            continue
        g = int(np.argmax(ious[:, a]))
        best = ious[g, a]
        labels[a] = 1 if best >= pos else (0 if best < neg else -1)
        matched[a] = g if best > 0 else -1
    return labels, matched


def py_cpu_nms(boxes, scores, thresh):
    """The greedy loop of the RetinaFace repos' ``py_cpu_nms`` (areas without the +1)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][ovr <= thresh]
    return np.array(keep, int)
