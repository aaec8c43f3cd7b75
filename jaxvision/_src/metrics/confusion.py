"""Confusion matrices of label maps: rows are ground truth, columns are prediction.

The counting convention (as FCN, Long et al. 2015, arXiv:1411.4038, and mmseg):

- a pixel whose target equals ``ignore_index`` or lies outside ``[0, C)`` is dropped;
- a pixel whose prediction lies outside ``[0, C)`` is a miss for its true class and a
  false positive for no class: it is counted in the extra last column ``cm[:, C]``.

So every matrix here has shape ``[C, C + 1]``: ``cm[i, j]`` (``j < C``) counts pixels of
true class ``i`` predicted as ``j``, ``cm[i, C]`` pixels of true class ``i`` whose
prediction was outside ``[0, C)``, and ``cm[:, :C]`` is the usual square matrix. Row sums
are the ground-truth pixel counts ``t_i``; sums of the first ``C`` columns are the
predicted pixel counts ``p_j``. Every score in ``jaxvision.metrics`` accepts this matrix
(or a plain square ``[C, C]`` one).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision._src.export import export
from jaxvision._src.metrics.histogram import histogram

# The bin index t * (C + 1) + p must fit in int32.
MAX_CLASSES = 46_000
# Counts of one call are int32; more pixels go through ConfusionState.
MAX_PIXELS_PER_CALL = 2**31 - 1


def check_num_classes(num_classes: int) -> int:
    """Validates ``num_classes`` (a static Python int in ``[1, MAX_CLASSES]``)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be a Python int, got {type(num_classes).__name__}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
    return int(num_classes)


def check_ignore_index(ignore_index: int | None) -> int | None:
    """Validates ``ignore_index`` (``None`` or a static Python int)."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise TypeError(
            f"ignore_index must be None or a Python int, got {type(ignore_index).__name__}"
        )
    return int(ignore_index)


def _check_labels(name: str, labels: jax.Array) -> jax.Array:
    if not isinstance(labels, jax.Array) and not jax.config.jax_enable_x64:
        host = np.asarray(labels)
        if host.dtype.kind in "iu" and host.dtype.itemsize == 8:
            # jnp.asarray would wrap 2**32 + 1 to 1; any label outside int32 is outside
            # [0, C) as well, so it becomes -1 (dropped as a target, a miss as a prediction).
            inside = host <= np.iinfo(np.int32).max
            if host.dtype.kind == "i":
                inside &= host >= np.iinfo(np.int32).min
            labels = np.where(inside, host, -1).astype(np.int32)
    labels = jnp.asarray(labels)
    if labels.dtype == jnp.bool_:
        return labels.astype(jnp.int32)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        hint = " (for scores use confusion_matrix_from_logits)" if name == "pred" else ""
        raise TypeError(f"{name} must hold integer class labels, got dtype {labels.dtype}{hint}")
    return labels


def _bin_indices(
    target: jax.Array, pred: jax.Array, num_classes: int, ignore_index: int | None
) -> jax.Array:
    """Flat bin ``t * (C + 1) + p'`` per pixel; ``C * (C + 1)`` for dropped pixels."""
    c = num_classes
    t = target.astype(jnp.int32)
    p = pred.astype(jnp.int32)
    # uint32 labels of 2^31 or more wrap to negative int32 values: still out of range.
    # 64-bit labels (under x64) could wrap into [0, C): test their range in their dtype.
    keep = (t >= 0) & (t < c)
    p_in = (p >= 0) & (p < c)
    if target.dtype.itemsize == 8:
        keep &= (target >= 0) & (target < c)
    if pred.dtype.itemsize == 8:
        p_in &= (pred >= 0) & (pred < c)
    if ignore_index is not None:
        keep &= t != ignore_index
    p = jnp.where(p_in, p, c)
    return jnp.where(keep, t * (c + 1) + p, c * (c + 1))


@export("metrics.confusion_matrix")
def confusion_matrix(
    target: jax.Array,
    pred: jax.Array,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    per_image: bool = False,
) -> jax.Array:
    """Exact confusion matrix of two label maps (rows ground truth, columns prediction).

    Pure and jit-able; labels may have any shape and any integer dtype (``uint8``
    included: the bin index is computed in int32, so ``C * t + p`` never wraps).

    Args:
      target: ``[...]`` ground-truth labels, integer dtype. Pixels equal to
        ``ignore_index`` or outside ``[0, num_classes)`` are dropped.
      pred: ``[...]`` predicted labels, same shape. A prediction outside
        ``[0, num_classes)`` is a miss for the true class only (column ``C``).
      num_classes: ``C``, a static int in ``[1, 46000]``.
      ignore_index: target label to drop, or ``None``. It may name a class in
        ``[0, C)`` (the mmseg behaviour: target pixels of that class are dropped while
        predictions of it still count as false positives); scores asked through
        :func:`segmentation_scores` or :class:`ConfusionState` refuse such a collision.
      per_image: if true, axis 0 of ``target`` / ``pred`` indexes images and one matrix
        per image is returned (for per-image averaging).

    Returns:
      ``[C, C + 1]`` int32 counts (``[N, C, C + 1]`` with ``per_image``): ``cm[i, j]`` for
      ``j < C`` counts pixels of class ``i`` predicted as ``j``; ``cm[i, C]`` pixels of
      class ``i`` predicted outside ``[0, C)``. ``cm[..., :C]`` is the square matrix.
      One call counts at most ``2**31 - 1`` pixels; accumulate larger totals exactly with
      :class:`ConfusionState`.

    Raises:
      TypeError: non-integer labels or a non-int ``num_classes`` / ``ignore_index``.
      ValueError: shapes differ, ``num_classes`` out of range, too many pixels.

    Example:
      >>> cm = confusion_matrix(jnp.array([0, 0, 1, 1]), jnp.array([0, 2, 1, 1]), 3)
      >>> mean_iou(cm)  # IoU [0.5, 1, 0]
      Array(0.5, dtype=float32)
    """
    num_classes = check_num_classes(num_classes)
    ignore_index = check_ignore_index(ignore_index)
    target = _check_labels("target", target)
    pred = _check_labels("pred", pred)
    if target.shape != pred.shape:
        raise ValueError(
            f"target and pred must have the same shape, got {target.shape} and {pred.shape}"
        )
    if target.size > MAX_PIXELS_PER_CALL:
        raise ValueError(
            f"target has {target.size} pixels; one call counts at most 2**31 - 1 in int32: "
            "split the batch and accumulate with ConfusionState"
        )
    if per_image:
        if target.ndim < 1:
            raise ValueError("per_image=True needs an image axis 0 in target and pred")
        flat_t = target.reshape(target.shape[0], -1)
        flat_p = pred.reshape(pred.shape[0], -1)
        return jax.vmap(lambda t, p: _confusion(t, p, num_classes, ignore_index))(flat_t, flat_p)
    return _confusion(target.reshape(-1), pred.reshape(-1), num_classes, ignore_index)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _confusion(
    target: jax.Array, pred: jax.Array, num_classes: int, ignore_index: int | None
) -> jax.Array:
    c = num_classes
    bins = _bin_indices(target, pred, c, ignore_index)
    counts = histogram(bins, c * (c + 1))
    return counts.reshape(c, c + 1)


def _nan_last_argmax(logits: jax.Array, axis: int) -> jax.Array:
    """``argmax`` with NaN ranked last; ``C`` (no class) where every logit is NaN."""
    nan = jnp.isnan(logits)
    best = jnp.max(jnp.where(nan, -jnp.inf, logits), axis=axis, keepdims=True)
    pred = jnp.argmax((logits == best) & ~nan, axis=axis).astype(jnp.int32)
    return jnp.where(jnp.all(nan, axis=axis), logits.shape[axis], pred)


@export("metrics.confusion_matrix_from_logits")
def confusion_matrix_from_logits(
    target: jax.Array,
    logits: jax.Array,
    *,
    axis: int = -1,
    ignore_index: int | None = None,
    per_image: bool = False,
) -> jax.Array:
    """Confusion matrix of ``target`` against ``argmax(logits, axis)``.

    Args:
      target: ``[...]`` integer labels (the logits' shape without the class axis).
      logits: scores with a class axis of size ``C`` at ``axis``: ``[N, H, W, C]``
        with the default ``axis=-1`` (JAX layout), ``[N, C, H, W]`` with ``axis=1``
        (PyTorch layout). Ties go to the lowest class, as ``jnp.argmax``. A NaN logit
        ranks last (below ``-inf``), so it never wins; a pixel whose logits are all NaN
        is predicted as no class (counted in column ``C``, a miss).
      axis: the class axis of ``logits``.
      ignore_index: as in :func:`confusion_matrix`.
      per_image: as in :func:`confusion_matrix`.

    Returns:
      ``[C, C + 1]`` int32 counts (``[N, C, C + 1]`` with ``per_image``).
    """
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
        raise ValueError("logits must have a class axis")
    if not -logits.ndim <= axis < logits.ndim:
        raise ValueError(f"axis={axis} is out of range for logits of shape {logits.shape}")
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"logits must be floating point, got dtype {logits.dtype}")
    num_classes = logits.shape[axis]
    pred = _nan_last_argmax(logits, axis)
    return confusion_matrix(
        target, pred, num_classes, ignore_index=ignore_index, per_image=per_image
    )
