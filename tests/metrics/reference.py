"""Float64 NumPy transcriptions of the FCN formulas (Long et al. 2015), written independently."""

import numpy as np


def reference_counts(target, pred, num_classes, ignore_index=None):
    """n [C, C] (pixels of class i predicted j), t [C] (class-i pixels, misses included)."""
    t = np.asarray(target, np.int64).ravel()
    p = np.asarray(pred, np.int64).ravel()
    valid = (t >= 0) & (t < num_classes)
    if ignore_index is not None:
        valid &= t != ignore_index
    n = np.zeros((num_classes, num_classes), np.int64)
    for i in range(num_classes):
        rows = valid & (t == i)
        n[i] = np.bincount(p[rows & (p >= 0) & (p < num_classes)], minlength=num_classes)
    gt = np.array([np.sum(valid & (t == i)) for i in range(num_classes)], np.int64)
    return n, gt


def fcn_scores(n, gt):
    """Every score in float64; NaN where a denominator is zero; means are nanmeans."""
    n = n.astype(np.float64)
    gt = gt.astype(np.float64)
    hits = np.diag(n)
    pr = n.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = hits / gt
        iou = hits / (gt + pr - hits)
        dice = 2 * hits / (gt + pr)
        prec = hits / pr
        total = gt.sum()
        out = {
            "pixel_accuracy": hits.sum() / total,
            "class_accuracy": acc,
            "class_iou": iou,
            "class_dice": dice,
            "class_precision": prec,
            "frequency_weighted_iou": np.nansum(gt * iou) / total,
        }
    for name, key in [
        ("mean_accuracy", "class_accuracy"),
        ("mean_iou", "class_iou"),
        ("mean_dice", "class_dice"),
    ]:
        vals = out[key]
        out[name] = np.nan if np.all(np.isnan(vals)) else np.nanmean(vals)
    return out
