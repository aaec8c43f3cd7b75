"""Face verification metrics: ROC, TAR at a FAR, and the LFW 10-fold protocol.

Inputs are one score per pair, ``scores [N]``, with ``same [N]`` (True for a genuine pair
of one identity). ``distance=False``: a higher score means more alike (cosine
similarity) and a pair is predicted "same" when ``score > threshold``; ``distance=True``:
a lower score means more alike (insightface's squared L2 distance between unit
embeddings, in ``[0, 4]``) and a pair is "same" when ``distance < threshold``, as
insightface's ``calculate_accuracy`` (``np.less``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export

INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)


def _inputs(scores: ArrayLike, same: ArrayLike, distance: bool) -> tuple[Array, Array]:
    s = jnp.asarray(scores)
    if not jnp.issubdtype(s.dtype, jnp.floating):
        s = s.astype(jnp.float32)
    y = jnp.asarray(same)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"`scores` and `same` must both be [N], got shapes {s.shape} and {y.shape}"
        )
    return (-s if distance else s), y.astype(bool)


def _predicted(scores: Array, thresholds: Array, distance: bool) -> Array:
    """``[T, N]`` predictions "same" for each threshold."""
    t = thresholds.astype(scores.dtype)
    # scores were negated for distances: d < t  <=>  -d > -t.
    return scores[None, :] > (-t if distance else t)[:, None]


@export("metrics.verification_roc")
def verification_roc(
    scores: ArrayLike, same: ArrayLike, thresholds: ArrayLike, *, distance: bool = False
) -> tuple[Array, Array]:
    """True and false accept rates of pair scores at each threshold.

    Args:
      scores: ``[N]`` pair scores (similarities, or distances with ``distance=True``).
      same: ``[N]`` booleans, True for genuine pairs.
      thresholds: ``[T]`` thresholds.
      distance: lower scores mean more alike (see the module docstring).

    Returns:
      ``(tar [T], far [T])``: ``TP / (TP + FN)`` and ``FP / (FP + TN)``; a rate with no
      pairs of its kind is 0 (as insightface).

    Raises:
      ValueError: ``scores`` and ``same`` are not both ``[N]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import metrics
      >>> s, y = jnp.array([0.9, 0.8, 0.3, 0.1]), jnp.array([True, False, True, False])
      >>> metrics.verification_roc(s, y, jnp.array([0.0, 0.5, 0.85]))
      (Array([1. , 0.5, 0.5], dtype=float32), Array([1. , 0.5, 0. ], dtype=float32))
    """
    s, y = _inputs(scores, same, distance)
    pred = _predicted(s, jnp.asarray(thresholds), distance)
    pos, neg = jnp.sum(y), jnp.sum(~y)
    tp = jnp.sum(pred & y, axis=1)
    fp = jnp.sum(pred & ~y, axis=1)
    tar = jnp.where(pos > 0, tp / jnp.maximum(pos, 1), 0.0).astype(jnp.float32)
    far = jnp.where(neg > 0, fp / jnp.maximum(neg, 1), 0.0).astype(jnp.float32)
    return tar, far


@export("metrics.tar_at_far")
def tar_at_far(
    scores: ArrayLike, same: ArrayLike, *, far: float = 1e-3, distance: bool = False
) -> Array:
    """The highest true accept rate at a false accept rate of at most ``far``.

    Over every threshold (each distinct score), the largest ``TAR`` whose ``FAR <= far``:
    the value read off ``sklearn.metrics.roc_curve`` as ``max(tpr[fpr <= far])``. With
    ``far * #impostors < 1`` no impostor may be accepted. (insightface's ``VAL@FAR``
    instead interpolates a threshold per fold on a fixed grid; this is the exact one.)

    Args:
      scores: ``[N]`` pair scores; same: ``[N]`` booleans.
      far: the false accept rate, in ``[0, 1]``.
      distance: lower scores mean more alike.

    Returns:
      Scalar float32 TAR in ``[0, 1]`` (0 without genuine pairs).

    Raises:
      ValueError: bad shapes or ``far`` outside ``[0, 1]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import metrics
      >>> s = jnp.array([0.9, 0.8, 0.7, 0.3, 0.2])
      >>> y = jnp.array([True, False, True, True, False])
      >>> metrics.tar_at_far(s, y, far=0.0), metrics.tar_at_far(s, y, far=0.5)
      (Array(0.33333334, dtype=float32), Array(1., dtype=float32))
    """
    if not 0 <= far <= 1:
        raise ValueError(f"`far` must be in [0, 1], got {far!r}")
    s, y = _inputs(scores, same, distance)
    order = jnp.argsort(-s, stable=True)
    s_sorted, y_sorted = s[order], y[order]
    tp = jnp.cumsum(y_sorted)
    fp = jnp.cumsum(~y_sorted)
    # Accepting down to a score accepts all its ties: only the last of a tie group counts.
    last = jnp.append(s_sorted[1:] != s_sorted[:-1], True)
    pos, neg = tp[-1], fp[-1]
    allowed = last & (fp <= far * neg)
    best = jnp.max(jnp.where(allowed, tp, 0), initial=0)
    return jnp.where(pos > 0, best / jnp.maximum(pos, 1), 0.0).astype(jnp.float32)


@export("metrics.LFWResult")
class LFWResult(NamedTuple):
    """The LFW protocol's outcome (``metrics.lfw_protocol``).

    Attributes:
      accuracy: ``[F]`` accuracy on each held-out fold, at the threshold of the others.
      thresholds: ``[F]`` the threshold chosen on the other ``F - 1`` folds.
      mean_accuracy: scalar mean of ``accuracy`` (the number LFW tables report).
      tar: ``[T]`` true accept rate per threshold, averaged over the test folds.
      far: ``[T]`` false accept rate per threshold, averaged over the test folds.
    """

    accuracy: Array
    thresholds: Array
    mean_accuracy: Array
    tar: Array
    far: Array


def fold_ids(num_pairs: int, num_folds: int) -> np.ndarray:
    """``[N]`` fold of each pair: contiguous blocks, the first ``N % F`` one longer (KFold)."""
    sizes = np.full(num_folds, num_pairs // num_folds)
    sizes[: num_pairs % num_folds] += 1
    return np.repeat(np.arange(num_folds), sizes)


@export("metrics.lfw_protocol")
def lfw_protocol(
    scores: ArrayLike,
    same: ArrayLike,
    *,
    num_folds: int = 10,
    thresholds: ArrayLike | None = None,
    distance: bool = True,
) -> LFWResult:
    """The LFW verification protocol: threshold chosen on ``F - 1`` folds, tested on one.

    Pairs are split into ``num_folds`` contiguous folds in their given order (no
    shuffling: ``sklearn.model_selection.KFold(n_splits, shuffle=False)``, so LFW's
    ``pairs.txt`` folds are kept). For each fold, the threshold of best accuracy on the
    other folds (the first on ties, ``np.argmax``) is applied to it. This is insightface's
    ``calculate_roc`` (``eval/verification.py``).

    Args:
      scores: ``[N]`` pair scores; by default distances (insightface: squared L2 between
        unit embeddings).
      same: ``[N]`` booleans, True for genuine pairs.
      num_folds: ``F`` >= 2, at most ``N``.
      thresholds: ``[T]`` candidate thresholds; default insightface's
        ``np.arange(0, 4, 0.01)`` (for distances).
      distance: lower scores mean more alike (default True, as insightface).

    Returns:
      ``LFWResult`` (per-fold accuracy and threshold, the mean accuracy, the mean ROC).

    Raises:
      ValueError: bad shapes or ``num_folds``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import metrics
      >>> d = jnp.array([0.2, 1.5, 0.4, 1.9, 0.3, 0.9, 1.1, 2.0])
      >>> y = jnp.array([True, False, True, False, True, False, True, False])
      >>> r = metrics.lfw_protocol(d, y, num_folds=4)
      >>> r.accuracy, r.mean_accuracy
      (Array([1. , 0.5, 0.5, 0.5], dtype=float32), Array(0.625, dtype=float32))
    """
    s, y = _inputs(scores, same, distance)
    n = s.shape[0]
    if not isinstance(num_folds, int) or not 2 <= num_folds <= max(n, 2) or num_folds > n:
        raise ValueError(f"`num_folds` must be an int in [2, N={n}], got {num_folds!r}")
    t = jnp.asarray(INSIGHTFACE_THRESHOLDS if thresholds is None else thresholds)
    folds = jax.nn.one_hot(fold_ids(n, num_folds), num_folds, dtype=jnp.int32)  # [N, F]
    pred = _predicted(s, t, distance)  # [T, N]
    correct = (pred == y[None, :]).astype(jnp.int32) @ folds  # [T, F]
    size = jnp.sum(folds, axis=0)  # [F]
    train_correct = jnp.sum(correct, axis=1, keepdims=True) - correct
    best = jnp.argmax(train_correct, axis=0)  # [F], the first maximum
    accuracy = (correct[best, jnp.arange(num_folds)] / size).astype(jnp.float32)
    tp = (pred & y).astype(jnp.int32) @ folds
    fp = (pred & ~y).astype(jnp.int32) @ folds
    pos = y.astype(jnp.int32) @ folds
    neg = size - pos
    tar = jnp.mean(jnp.where(pos > 0, tp / jnp.maximum(pos, 1), 0.0), axis=1)
    far = jnp.mean(jnp.where(neg > 0, fp / jnp.maximum(neg, 1), 0.0), axis=1)
    return LFWResult(
        accuracy=accuracy,
        thresholds=t[best],
        mean_accuracy=jnp.mean(accuracy),
        tar=tar.astype(jnp.float32),
        far=far.astype(jnp.float32),
    )
