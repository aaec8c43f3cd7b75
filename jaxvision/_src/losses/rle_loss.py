"""Residual log-likelihood estimation (RLE) loss for regression-based pose estimation."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.losses.keypoint_losses import _weights

Q_DISTRIBUTIONS = ("laplace", "gaussian")

# sigma = sigmoid(raw) + _SIGMA_FLOOR keeps log(sigma) and the normalised error finite
# when the sigmoid underflows (mmpose and the official code add 1e-9 likewise).
_SIGMA_FLOOR = 1e-9


def _standard_normal_log_prob(x: Array) -> Array:
    return -0.5 * jnp.sum(x**2, axis=-1) - math.log(2 * math.pi)


@export("losses.rle_loss")
def rle_loss(
    pred: ArrayLike,
    sigma_logits: ArrayLike,
    target: ArrayLike,
    target_weight: ArrayLike | None = None,
    *,
    log_prob: Callable[[Array], Array] | None = None,
    q: str = "laplace",
    residual: bool = True,
) -> Array:
    """RLE: ``-log Q(mu_bar) - log G_phi(mu_bar) + log sigma``, ``mu_bar = (mu - mu_g) / sigma``.

    Per keypoint and coordinate ``c`` (the form of mmpose's ``RLELoss``, which the RLE
    paper's released numbers come from)::

        loss_c = log sigma_c - log G(mu_bar) + [-log Q(mu_bar_c) + log sigma_c]

    with ``sigma = sigmoid(sigma_logits) + 1e-9``, ``G`` the flow's 2-D log-density
    (``log_prob``; ``None`` = a standard normal, i.e. an identity flow), and the bracket
    (``residual=True``) ``log(2 sigma) + |mu_bar|`` for a Laplace ``Q`` or
    ``log(sigma sqrt(2 pi)) + mu_bar^2 / 2`` for a Gaussian one. The two coordinates are
    summed, weighted by ``target_weight`` and averaged over ``[..., K]`` (mmpose divides the
    sum by the batch size only, which is ``K`` times this). The official RLE code uses
    ``log(sigma sqrt(2 pi)) + |mu_bar| / sqrt(2)`` for the bracket. Finite with finite
    gradients for ``sigma`` near 0 or 1 and for large errors, given a finite ``log_prob``.

    Args:
      pred: ``[..., K, 2]`` regressed coordinates (RLE: normalised to the input size).
      sigma_logits: ``[..., K, 2]`` raw sigma before the sigmoid.
      target: ``[..., K, 2]`` ground-truth coordinates.
      target_weight: ``[..., K]``; ``None``: 1.
      log_prob: ``[..., 2] -> [...]`` log-density of the residual flow, e.g. an
        ``nn.RealNVP`` or ``partial(ops.realnvp_log_prob, params)``.
      q: ``"laplace"`` (RLE's choice) or ``"gaussian"``.
      residual: add the ``Q`` term (residual log-likelihood); False: the flow alone.

    Returns:
      Scalar float32 loss.

    References:
      Li et al., "Human Pose Regression with Residual Log-likelihood Estimation", ICCV
      2021 (arXiv:2107.11291).

    Examples:
      >>> import numpy as np
      >>> zeros = np.zeros((1, 2))
      >>> round(float(rle_loss(zeros, zeros, zeros)), 6)
      2.28946
      >>> round(float(rle_loss(np.array([[0.1, -0.2]]), zeros, zeros, q="gaussian")), 6)
      3.041042
    """
    mu = checks.as_keypoints(pred, "pred")
    raw = checks.as_keypoints(sigma_logits, "sigma_logits")
    gt = checks.as_keypoints(target, "target")
    if not mu.shape == raw.shape == gt.shape:
        raise ValueError(
            f"`pred` {mu.shape}, `sigma_logits` {raw.shape} and `target` {gt.shape} must match"
        )
    q = checks.check_choice(q, Q_DISTRIBUTIONS, "q")
    w = _weights(target_weight, mu.shape[:-1], mu.dtype)
    sigma = jax.nn.sigmoid(raw) + _SIGMA_FLOOR
    log_sigma = jnp.log(sigma)
    bar = (mu - gt) / sigma
    log_g = (log_prob or _standard_normal_log_prob)(bar)
    loss = log_sigma - log_g[..., None]
    if residual:
        if q == "laplace":
            loss = loss + math.log(2.0) + log_sigma + jnp.abs(bar)
        else:
            loss = loss + 0.5 * math.log(2 * math.pi) + log_sigma + 0.5 * bar**2
    return jnp.mean(jnp.sum(loss, axis=-1) * w)
