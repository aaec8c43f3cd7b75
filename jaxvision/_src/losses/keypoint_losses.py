"""Keypoint training losses: heatmap MSE (with OHKM), SimCC KL and integral L1."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks


def _weights(target_weight: ArrayLike | None, shape: tuple[int, ...], dtype) -> Array:
    """``[..., K]`` target weights (``None``: all 1), checked against ``shape``."""
    if target_weight is None:
        return jnp.ones(shape, dtype)
    w = checks.as_float(target_weight, "target_weight")
    if w.shape != shape:
        raise ValueError(f"`target_weight` must have shape {shape}, got {w.shape}")
    return w.astype(dtype)


@export("losses.heatmap_mse_loss")
def heatmap_mse_loss(
    pred: ArrayLike,
    target: ArrayLike,
    target_weight: ArrayLike | None = None,
    *,
    ohkm_topk: int | None = None,
) -> Array:
    """Mean squared error between heatmaps, each keypoint's error times its weight.

    ``mean_{..., H, W, K} w_k (pred - target)^2`` (mmpose ``KeypointMSELoss`` with
    ``use_target_weight``; the 2018 MSRA code's extra factor 0.5 is left out). With
    ``ohkm_topk`` (online hard keypoint mining, Chen et al. CPN 2018) only the ``topk``
    keypoints with the largest weighted error of each instance count, averaged.

    Args:
      pred: ``[..., H, W, K]`` predicted heatmaps.
      target: ``[..., H, W, K]`` target heatmaps (:func:`keypoints.gaussian_heatmaps`).
      target_weight: ``[..., K]`` per-keypoint weights (0 for unlabelled); ``None``: 1.
      ohkm_topk: keep the ``topk`` hardest keypoints per instance (static), ``None``: all.

    Returns:
      Scalar float32 loss.

    Examples:
      >>> import numpy as np
      >>> p, t = np.zeros((2, 2, 2)), np.ones((2, 2, 2))
      >>> float(heatmap_mse_loss(p, t, np.array([1.0, 0.0])))
      0.5
    """
    p = checks.as_heatmaps(pred, "pred")
    t = checks.as_heatmaps(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"`pred` {p.shape} and `target` {t.shape} must have the same shape")
    w = _weights(target_weight, p.shape[:-3] + p.shape[-1:], p.dtype)
    per_kp = jnp.mean((p - t) ** 2, axis=(-3, -2)) * w  # [..., K]
    if ohkm_topk is None:
        return jnp.mean(per_kp)
    k = p.shape[-1]
    if int(ohkm_topk) != ohkm_topk or not 1 <= ohkm_topk <= k:
        raise ValueError(f"`ohkm_topk` must be an int in [1, {k}], got {ohkm_topk!r}")
    return jnp.mean(jax.lax.top_k(per_kp, int(ohkm_topk))[0])


@export("losses.simcc_kl_loss")
def simcc_kl_loss(
    pred_x: ArrayLike,
    pred_y: ArrayLike,
    target_x: ArrayLike,
    target_y: ArrayLike,
    target_weight: ArrayLike | None = None,
    *,
    beta: float = 10.0,
    label_smoothing: float = 0.0,
) -> Array:
    """SimCC loss: ``KL(target || softmax(beta * pred))`` per axis, summed over bins.

    Each axis's KL is summed over its bins (a true KL: one-hot against uniform over ``n``
    bins gives ``ln n``); the x and y terms are added, weighted per keypoint and averaged
    over ``[..., K]``. mmpose's ``KLDiscretLoss`` averages over bins instead, which only
    rescales the loss by ``1 / bins``. ``label_smoothing`` mixes the targets with the
    uniform distribution, ``(1 - e) t + e / bins``.

    Args:
      pred_x: ``[..., K, Wk]`` x logits; ``pred_y``: ``[..., K, Hk]`` y logits.
      target_x, target_y: label distributions of the same shapes
        (:func:`keypoints.simcc_encode`).
      target_weight: ``[..., K]``; ``None``: 1.
      beta: logit scale before the softmax (RTMPose uses 10).
      label_smoothing: ``e`` in ``[0, 1)``.

    Returns:
      Scalar float32 loss.

    References:
      Li et al., SimCC, ECCV 2022; Jiang et al., RTMPose, arXiv:2303.07399.

    Examples:
      >>> import numpy as np
      >>> onehot = np.eye(384)[:1]
      >>> round(float(simcc_kl_loss(np.zeros((1, 384)), np.zeros((1, 384)),
      ...                           onehot, onehot, beta=1.0)) / 2, 6)
      5.950643
    """
    names = ("pred_x", "pred_y", "target_x", "target_y")
    arrs = [
        checks.as_float(a, n)
        for a, n in zip((pred_x, pred_y, target_x, target_y), names, strict=True)
    ]
    for (a, n), (b, m) in (
        ((arrs[0], names[0]), (arrs[2], names[2])),
        ((arrs[1], names[1]), (arrs[3], names[3])),
    ):
        if a.ndim < 2 or a.shape != b.shape:
            raise ValueError(f"`{n}` {a.shape} and `{m}` {b.shape} must be equal [..., K, bins]")
    if arrs[0].shape[:-1] != arrs[1].shape[:-1]:
        raise ValueError(
            f"`pred_x` {arrs[0].shape} and `pred_y` {arrs[1].shape} differ in [..., K]"
        )
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}")
    w = _weights(target_weight, arrs[0].shape[:-1], arrs[0].dtype)
    total = 0.0
    for p, t in ((arrs[0], arrs[2]), (arrs[1], arrs[3])):
        t = (1.0 - label_smoothing) * t + label_smoothing / t.shape[-1]
        logp = jax.nn.log_softmax(beta * p, axis=-1)
        xlogx = jnp.where(t > 0, t * jnp.log(jnp.where(t > 0, t, 1.0)), 0.0)
        total = total + jnp.sum(xlogx - t * logp, axis=-1)
    return jnp.mean(total * w)


@export("losses.integral_l1_loss")
def integral_l1_loss(
    pred: ArrayLike, target: ArrayLike, target_weight: ArrayLike | None = None
) -> Array:
    """L1 loss on decoded coordinates, ``mean_{..., K, 2} w_k |pred - target|``.

    The loss of Integral Pose Regression (Sun et al., ECCV 2018), applied to the output of
    :func:`keypoints.soft_argmax`; mmpose's ``L1Loss`` with target weights.

    Args:
      pred: ``[..., K, 2]`` predicted coordinates; ``target``: the same shape.
      target_weight: ``[..., K]``; ``None``: 1.

    Returns:
      Scalar float32 loss.

    Examples:
      >>> import numpy as np
      >>> float(integral_l1_loss(np.zeros((2, 2)), np.array([[1.0, 3.0], [5.0, 5.0]]),
      ...                        np.array([1.0, 0.0])))
      1.0
    """
    p = checks.as_keypoints(pred, "pred")
    t = checks.as_keypoints(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"`pred` {p.shape} and `target` {t.shape} must have the same shape")
    w = _weights(target_weight, p.shape[:-1], p.dtype)
    return jnp.mean(jnp.abs(p - t) * w[..., None])
