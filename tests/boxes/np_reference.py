"""Float64 NumPy transcriptions of the papers' formulas, the independent reference.

Written directly from the definitions (Rezatofighi 2019, Zheng 2020, Zhang 2021,
Gevorgyan 2022, He 2021), for non-degenerate boxes: no clamping tricks, no eps, plain
``atan(w / h)`` and ``arcsin``. Every function takes ``xyxy`` float64 boxes ``[..., 4]``
that broadcast against each other.
"""

import numpy as np


def to_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    b = np.asarray(boxes, np.float64)
    if fmt == "xyxy":
        return b
    if fmt == "xywh":
        x, y, w, h = np.moveaxis(b, -1, 0)
        return np.stack([x, y, x + w, y + h], -1)
    cx, cy, w, h = np.moveaxis(b, -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def from_xyxy(boxes: np.ndarray, fmt: str) -> np.ndarray:
    x1, y1, x2, y2 = np.moveaxis(np.asarray(boxes, np.float64), -1, 0)
    if fmt == "xyxy":
        return np.stack([x1, y1, x2, y2], -1)
    if fmt == "xywh":
        return np.stack([x1, y1, x2 - x1, y2 - y1], -1)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def random_boxes(rng: np.random.Generator, shape: tuple, scale: float = 10.0) -> np.ndarray:
    """Valid xyxy boxes with sides in [0.1, 0.6] * scale, corners in [-scale, scale]."""
    xy = rng.uniform(-scale, scale, (*shape, 2))
    wh = rng.uniform(0.1 * scale, 0.6 * scale, (*shape, 2))
    return np.concatenate([xy, xy + wh], -1)


def _parts(a, b):
    ax1, ay1, ax2, ay2 = np.moveaxis(a, -1, 0)
    bx1, by1, bx2, by2 = np.moveaxis(b, -1, 0)
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * np.clip(
        np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None
    )
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    cw = np.maximum(ax2, bx2) - np.minimum(ax1, bx1)
    ch = np.maximum(ay2, by2) - np.minimum(ay1, by1)
    rho2 = ((ax1 + ax2) / 2 - (bx1 + bx2) / 2) ** 2 + ((ay1 + ay2) / 2 - (by1 + by2) / 2) ** 2
    return dict(
        iou=inter / union,
        union=union,
        c_area=cw * ch,
        cw=cw,
        ch=ch,
        rho2=rho2,
        c2=cw**2 + ch**2,
        wa=ax2 - ax1,
        ha=ay2 - ay1,
        wb=bx2 - bx1,
        hb=by2 - by1,
        dx=(bx1 + bx2) / 2 - (ax1 + ax2) / 2,
        dy=(by1 + by2) / 2 - (ay1 + ay2) / 2,
    )


def iou(a, b):
    return _parts(a, b)["iou"]


def giou_penalty(a, b):
    p = _parts(a, b)
    return (p["c_area"] - p["union"]) / p["c_area"]


def diou_penalty(a, b):
    p = _parts(a, b)
    return p["rho2"] / p["c2"]


def ciou_v_alpha(a, b):
    p = _parts(a, b)
    v = 4 / np.pi**2 * (np.arctan(p["wb"] / p["hb"]) - np.arctan(p["wa"] / p["ha"])) ** 2
    # Identical boxes: alpha = 0/0, but its term alpha * v vanishes with v; take alpha 0.
    with np.errstate(invalid="ignore"):
        return v, np.where(v == 0, 0.0, v / ((1 - p["iou"]) + v))


def giou(a, b):
    return iou(a, b) - giou_penalty(a, b)


def diou(a, b):
    return iou(a, b) - diou_penalty(a, b)


def ciou(a, b):
    v, alpha = ciou_v_alpha(a, b)
    return diou(a, b) - alpha * v


PAIRWISE = {
    "box_iou": iou,
    "box_giou": giou,
    "box_diou": diou,
    "box_ciou": ciou,
}


def pairwise(name: str, boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """``[..., N, 4]`` x ``[..., M, 4]`` -> ``[..., N, M]`` by broadcasting."""
    return PAIRWISE[name](boxes1[..., :, None, :], boxes2[..., None, :, :])


def loss(name: str, pred, target, power=1.0, alpha=None, focal_gamma=0.0, focal=None, theta=4.0):
    """The aligned loss ``name`` on xyxy boxes; ``alpha`` / ``focal`` freeze CIoU's trade-off
    and the Focal-EIoU weight (for finite differences that hold them constant)."""
    p = _parts(pred, target)
    head = 1 - p["iou"] ** power
    if name == "iou_loss":
        return head
    if name == "giou_loss":
        return head + ((p["c_area"] - p["union"]) / p["c_area"]) ** power
    dist = (p["rho2"] / p["c2"]) ** power
    if name == "diou_loss":
        return head + dist
    if name == "ciou_loss":
        v, a = ciou_v_alpha(pred, target)
        a = a if alpha is None else alpha
        return head + dist + (a * v) ** power
    if name == "eiou_loss":
        out = (
            head
            + dist
            + ((p["wa"] - p["wb"]) ** 2 / p["cw"] ** 2) ** power
            + ((p["ha"] - p["hb"]) ** 2 / p["ch"] ** 2) ** power
        )
        weight = p["iou"] ** focal_gamma if focal is None else focal
        return weight * out
    if name == "siou_loss":
        sigma = np.sqrt(p["dx"] ** 2 + p["dy"] ** 2)
        sin_alpha = np.abs(p["dy"]) / sigma
        # The paper measures the smaller of the two angles to the axes.
        x = np.where(sin_alpha > np.sqrt(2) / 2, np.abs(p["dx"]) / sigma, sin_alpha)
        angle = 1 - 2 * np.sin(np.arcsin(x) - np.pi / 4) ** 2
        gamma = 2 - angle
        rho_x = (p["dx"] / p["cw"]) ** 2
        rho_y = (p["dy"] / p["ch"]) ** 2
        distance = (1 - np.exp(-gamma * rho_x)) + (1 - np.exp(-gamma * rho_y))
        omega_w = np.abs(p["wa"] - p["wb"]) / np.maximum(p["wa"], p["wb"])
        omega_h = np.abs(p["ha"] - p["hb"]) / np.maximum(p["ha"], p["hb"])
        shape = (1 - np.exp(-omega_w)) ** theta + (1 - np.exp(-omega_h)) ** theta
        return head + ((distance + shape) / 2) ** power
    raise KeyError(name)


def frozen(name: str, pred, target, focal_gamma: float = 0.0) -> dict:
    """The factors that the losses hold constant under differentiation, at a point."""
    if name == "ciou_loss":
        return {"alpha": ciou_v_alpha(pred, target)[1]}
    if name == "eiou_loss":
        return {"focal": iou(pred, target) ** focal_gamma}
    return {}


def numerical_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of ``sum(f(x))`` with respect to every entry of ``x``."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = np.sum(f(x))
        flat[i] = old - h
        down = np.sum(f(x))
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, labels=None) -> list:
    """Sequential greedy NMS in float64: a box is dropped when IoU > threshold with a kept
    box of the same label; order by decreasing score, ties by lower index."""
    boxes = np.asarray(boxes, np.float64)
    labels = np.zeros(len(scores), int) if labels is None else np.asarray(labels)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list = []
    for i in order:
        same = [k for k in kept if labels[k] == labels[i]]
        if not same or not np.any(iou(boxes[same], boxes[i]) > threshold):
            kept.append(i)
    return kept
