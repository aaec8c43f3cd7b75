"""Problems shared by the matching tests: DETR-like costs, padding masks, the tolerance."""

import numpy as np

RTOL = 1e-6


def assert_same_total(mine: float, ref: float, scale: float) -> None:
    # Relative to the optimum, or to the problem's cost scale when the optimum is near 0.
    assert abs(mine - ref) <= RTOL * max(abs(ref), scale), (mine, ref)


def random_boxes_cxcywh(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    centre = rng.uniform(0.05, 0.95, (*shape, 2))
    size = rng.uniform(0.02, 0.6, (*shape, 2))
    return np.concatenate([centre, size], axis=-1)


def detr_like_costs(rng: np.random.Generator, b: int, q: int, t: int) -> np.ndarray:
    """``5 * L1 - 2 * GIoU - prob`` between random predicted and target boxes: [B, Q, T]."""
    pred = random_boxes_cxcywh(rng, (b, q))
    tgt = random_boxes_cxcywh(rng, (b, t))
    l1 = np.abs(pred[:, :, None, :] - tgt[:, None, :, :]).sum(-1)

    def xyxy(x):
        return np.concatenate([x[..., :2] - x[..., 2:] / 2, x[..., :2] + x[..., 2:] / 2], -1)

    p, g = xyxy(pred)[:, :, None, :], xyxy(tgt)[:, None, :, :]
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    lt, rb = np.maximum(p[..., :2], g[..., :2]), np.minimum(p[..., 2:], g[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    union = area_p + area_g - inter
    hull = np.prod(np.maximum(p[..., 2:], g[..., 2:]) - np.minimum(p[..., :2], g[..., :2]), -1)
    giou = inter / union - (hull - union) / hull
    logits = rng.normal(size=(b, q, 92))
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 91, (b, t))
    class_cost = -np.take_along_axis(prob, labels[:, None, :].repeat(q, 1), axis=2)
    return (5 * l1 - 2 * giou + class_cost).astype(np.float32)


def padding_mask(rng: np.random.Generator, b: int, t: int, low: int = 1) -> np.ndarray:
    counts = rng.integers(low, t + 1, b)
    counts[0] = low  # always include the extreme counts
    counts[-1] = t
    return np.arange(t)[None, :] < counts[:, None]
