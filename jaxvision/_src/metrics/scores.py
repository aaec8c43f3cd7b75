"""Segmentation scores from a confusion matrix (FCN, Long et al. 2015, arXiv:1411.4038).

With ``n_ij`` the pixels of true class ``i`` predicted as ``j``, ``t_i`` the pixels of
true class ``i`` (row sum, misses included) and ``p_j`` the pixels predicted as ``j``:

- pixel accuracy ``sum_i n_ii / sum_i t_i``;
- class accuracy (per-class recall) ``n_ii / t_i``, precision ``n_ii / p_i``;
- IoU ``n_ii / (t_i + p_i - n_ii)``, frequency-weighted IoU ``sum_i t_i IoU_i / sum_i t_i``;
- Dice ``2 n_ii / (t_i + p_i)`` (Dice 1945), F-beta
  ``(1 + b^2) n_ii / ((1 + b^2) n_ii + b^2 (t_i - n_ii) + (p_i - n_ii))``.

Absent classes. A per-class score whose denominator is zero takes the value ``absent``:
NaN by default (FCN and mmseg), a number such as ``0.0`` on request (torchmetrics'
``zero_division``). Means average over the classes that occur in the target or the
prediction, skipping NaN values: with the default, exactly the classes whose score is
defined (``nanmean``, as FCN and mmseg); with ``absent=0.0``, a class predicted but never
in the target counts as 0 (torchmetrics ``average="macro"``). A class that occurs nowhere
never enters a mean. When no class is left, the mean is NaN.

Names pair up: ``class_<score>`` is ``[..., C]`` and ``mean_<score>`` its mean over the
occurring classes (``class_iou`` / ``mean_iou``, ``class_dice`` / ``mean_dice``,
``class_accuracy`` / ``mean_accuracy``).

Every function takes ``cm: [..., C, C + 1]`` (as built by ``confusion_from_labels``, last
column = predictions outside ``[0, C)``) or a square ``[..., C, C]`` matrix, int counts
(host ``int64`` arrays from ``ConfusionState.counts()`` included) or float; leading axes
(e.g. one matrix per image) are kept. Scores are float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvision._src.export import export, export_deprecated

NAN = float("nan")


def as_float_counts(cm: ArrayLike) -> jax.Array:
    """Validates a confusion matrix and returns it as float32 ``[..., C, C or C + 1]``."""
    if isinstance(cm, np.ndarray) and cm.dtype.kind in "iu":
        # Host counts may exceed int32; float64 keeps them exact before rounding to f32.
        cm = cm.astype(np.float64)
    cm = jnp.asarray(cm)
    if cm.ndim < 2:
        raise ValueError(f"cm must be [..., C, C] or [..., C, C + 1], got shape {cm.shape}")
    c = cm.shape[-2]
    if c < 1 or cm.shape[-1] not in (c, c + 1):
        raise ValueError(f"cm must be [..., C, C] or [..., C, C + 1], got shape {cm.shape}")
    if not (jnp.issubdtype(cm.dtype, jnp.integer) or jnp.issubdtype(cm.dtype, jnp.floating)):
        raise TypeError(f"cm must hold counts, got dtype {cm.dtype}")
    return cm.astype(jnp.float32)


def _check_absent(absent: float) -> jax.Array:
    if isinstance(absent, bool) or not isinstance(absent, int | float):
        raise TypeError(f"absent must be a float (NaN or a number), got {absent!r}")
    return jnp.float32(absent)


def _ratio(num: jax.Array, den: jax.Array, absent: jax.Array) -> jax.Array:
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), absent)


def _mean(values: jax.Array, occurs: jax.Array) -> jax.Array:
    """Mean over classes that occur and have a non-NaN value; NaN if none."""
    keep = occurs & ~jnp.isnan(values)
    n = keep.sum(-1)
    total = jnp.where(keep, values, 0.0).sum(-1)
    return jnp.where(n > 0, total / jnp.maximum(n, 1), jnp.float32(NAN))


@jax.jit
def _all_scores(cm: ArrayLike, absent: jax.Array, beta2: jax.Array) -> dict[str, jax.Array]:
    """Every score of a float32 matrix; one compiled function per shape in eager use."""
    c = cm.shape[-2]
    square = cm[..., :c]
    hits = jnp.diagonal(square, axis1=-2, axis2=-1)
    t = cm.sum(-1)
    p = square.sum(-2)
    occurs = (t + p) > 0
    nan = jnp.float32(NAN)
    acc = _ratio(hits, t, absent)
    iou = _ratio(hits, t + p - hits, absent)
    dice = _ratio(2.0 * hits, t + p, absent)
    fbeta = _ratio(
        (1.0 + beta2) * hits, (1.0 + beta2) * hits + beta2 * (t - hits) + p - hits, absent
    )
    return {
        "pixel_accuracy": _ratio(hits.sum(-1), t.sum(-1), nan),
        "class_accuracy": acc,
        "class_precision": _ratio(hits, p, absent),
        "mean_accuracy": _mean(acc, occurs),
        "class_iou": iou,
        "mean_iou": _mean(iou, occurs),
        "frequency_weighted_iou": _ratio(
            (t * _ratio(hits, t + p - hits, jnp.float32(0.0))).sum(-1), t.sum(-1), nan
        ),
        "class_dice": dice,
        "mean_dice": _mean(dice, occurs),
        "class_fbeta": fbeta,
    }


def _score(name: str, cm: ArrayLike, absent: float = NAN, beta: float = 1.0) -> jax.Array:
    cm = as_float_counts(cm)
    return _all_scores(cm, _check_absent(absent), jnp.float32(beta) ** 2)[name]


@export("metrics.pixel_accuracy")
def pixel_accuracy(cm: ArrayLike) -> jax.Array:
    """Pixel accuracy ``sum_i n_ii / sum_i t_i`` (FCN); NaN when no pixel is counted.

    Equals torchmetrics ``MulticlassAccuracy(average="micro")`` and mmseg ``aAcc``.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.

    Returns:
      ``[...]`` float32.

    Examples:
      >>> pixel_accuracy(jnp.array([[3, 1], [0, 4]]))
      Array(0.875, dtype=float32)
    """
    return _score("pixel_accuracy", cm)


@export("metrics.class_accuracy", deprecated=("metrics.recall",))
def class_accuracy(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Per-class accuracy ``n_ii / t_i`` (per-class recall); ``absent`` where ``t_i = 0``.

    mmseg's ``Acc``; torchmetrics ``MulticlassRecall(average="none")`` with ``absent=0.0``.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes without ground-truth pixels (NaN: undefined).

    Returns:
      ``[..., C]`` float32.

    Examples:
      >>> class_accuracy(jnp.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]))
      Array([0.75, 1.  ,  nan], dtype=float32)
    """
    return _score("class_accuracy", cm, absent)


@export("metrics.class_precision", deprecated=("metrics.precision",))
def class_precision(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Per-class precision ``n_ii / p_i``; ``absent`` where ``p_i = 0``.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes never predicted.

    Returns:
      ``[..., C]`` float32.

    Examples:
      >>> class_precision(jnp.array([[3, 1], [0, 4]]))
      Array([1. , 0.8], dtype=float32)
    """
    return _score("class_precision", cm, absent)


@export("metrics.mean_accuracy", deprecated=("metrics.mean_pixel_accuracy",))
def mean_accuracy(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Mean class accuracy ``mean_i n_ii / t_i`` over occurring classes (FCN's "mean accuracy").

    With the default, classes without ground-truth pixels are excluded (FCN, mmseg
    ``mAcc``); with ``absent=0.0``, a class only predicted counts as 0 (torchmetrics
    ``MulticlassAccuracy(average="macro")``).

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes without ground-truth pixels; NaN excludes them.

    Returns:
      ``[...]`` float32, NaN if no class is left.

    Examples:
      >>> mean_accuracy(jnp.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]))
      Array(0.875, dtype=float32)
    """
    return _score("mean_accuracy", cm, absent)


@export("metrics.class_iou")
def class_iou(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Per-class intersection over union ``n_ii / (t_i + p_i - n_ii)``.

    A class in neither target nor prediction gets ``absent`` (NaN as mmseg; torchmetrics
    ``MulticlassJaccardIndex(average="none")`` gives 0: pass ``absent=0.0``).

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes with an empty union.

    Returns:
      ``[..., C]`` float32.

    Examples:
      >>> class_iou(jnp.array([[3, 1], [0, 4]]))
      Array([0.75, 0.8 ], dtype=float32)
    """
    return _score("class_iou", cm, absent)


@export("metrics.mean_iou")
def mean_iou(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Mean IoU over the classes that occur in the target or the prediction (FCN mIoU).

    Equals mmseg ``mIoU`` and torchmetrics ``MulticlassJaccardIndex(average="macro")``
    (whatever ``absent``: only classes with an empty union are absent here). For a
    per-image mean, pass ``confusion_from_labels(..., per_image=True)`` and average the result.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes with an empty union (never part of the mean).

    Returns:
      ``[...]`` float32, NaN if no class occurs.

    Examples:
      >>> mean_iou(jnp.array([[3, 1], [0, 4]]))
      Array(0.775, dtype=float32)
    """
    return _score("mean_iou", cm, absent)


@export("metrics.frequency_weighted_iou")
def frequency_weighted_iou(cm: ArrayLike) -> jax.Array:
    """Frequency-weighted IoU ``sum_i t_i IoU_i / sum_i t_i`` (FCN).

    Equals torchmetrics ``MulticlassJaccardIndex(average="weighted")``. Classes without
    ground-truth pixels have weight 0; NaN when no pixel is counted.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.

    Returns:
      ``[...]`` float32.

    Examples:
      >>> frequency_weighted_iou(jnp.array([[3, 1], [0, 4]]))
      Array(0.775, dtype=float32)
    """
    return _score("frequency_weighted_iou", cm)


@export("metrics.class_dice", deprecated=("metrics.dice",))
def class_dice(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Per-class Dice coefficient ``2 n_ii / (t_i + p_i)`` (Dice 1945; F1 score).

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes in neither target nor prediction.

    Returns:
      ``[..., C]`` float32.

    Examples:
      >>> class_dice(jnp.array([[3, 1], [0, 4]]))
      Array([0.8571, 0.8889 ], dtype=float32)
    """
    return _score("class_dice", cm, absent)


@export("metrics.mean_dice")
def mean_dice(cm: ArrayLike, *, absent: float = NAN) -> jax.Array:
    """Mean Dice over the classes that occur in the target or the prediction (mmseg mDice).

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      absent: value for classes in neither (never part of the mean).

    Returns:
      ``[...]`` float32, NaN if no class occurs.

    Examples:
      >>> mean_dice(jnp.array([[3, 1], [0, 4]]))
      Array(0.8730, dtype=float32)
    """
    return _score("mean_dice", cm, absent)


@export("metrics.class_fbeta")
def class_fbeta(cm: ArrayLike, *, beta: float = 1.0, absent: float = NAN) -> jax.Array:
    """Per-class F-beta ``(1 + b^2) P R / (b^2 P + R)`` from counts (van Rijsbergen 1979).

    Computed as ``(1 + b^2) n_ii / ((1 + b^2) n_ii + b^2 (t_i - n_ii) + (p_i - n_ii))``,
    which is defined whenever the class occurs; ``beta = 1`` gives :func:`class_dice`.
    Equals torchmetrics ``MulticlassFBetaScore(beta, average="none")`` with ``absent=0.0``.

    Args:
      cm: ``[..., C, C + 1]`` or ``[..., C, C]`` confusion matrix.
      beta: positive weight of recall relative to precision (static float).
      absent: value for classes in neither target nor prediction.

    Returns:
      ``[..., C]`` float32.

    Examples:
      >>> cm = jnp.array([[2, 2], [0, 4]])  # class 0: P = 1, R = 0.5
      >>> class_fbeta(cm, beta=2.0)
      Array([0.5556 , 0.9091], dtype=float32)
    """
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta > 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    if not math.isfinite(beta):
        raise ValueError(f"beta must be finite, got {beta!r}")
    return _score("class_fbeta", cm, absent, float(beta))


@export_deprecated("metrics.fbeta_score", replacement="metrics.class_fbeta")
def fbeta_score(cm: ArrayLike, beta: float = 1.0, *, absent: float = NAN) -> jax.Array:
    """Deprecated: ``class_fbeta(cm, beta=beta, absent=absent)`` (``beta`` keyword-only)."""
    return class_fbeta(cm, beta=beta, absent=absent)
