"""Training losses and decoders of the four pose heads (``models.PoseModel``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxvision._src.export import export
from jaxvision._src.keypoints.argmax import heatmap_argmax
from jaxvision._src.keypoints.heatmaps import gaussian_heatmaps
from jaxvision._src.keypoints.simcc import simcc_decode, simcc_encode
from jaxvision._src.losses.keypoint_losses import (
    heatmap_mse_loss,
    integral_l1_loss,
    simcc_kl_loss,
)
from jaxvision._src.losses.rle_loss import rle_loss
from jaxvision._src.models.pose import PoseConfig
from jaxvision._src.ops.pooling import _first_max


@export("models.pose_loss")
def pose_loss(
    outputs: dict[str, jax.Array],
    keypoints: jax.Array,
    weights: jax.Array,
    config: PoseConfig,
    *,
    heatmap_sigma: float = 2.0,
    simcc_sigma: float = 2.0,
    flow_log_prob: Callable[[jax.Array], jax.Array] | None = None,
    integral_heatmap_weight: float = 0.0,
) -> jax.Array:
    """The loss of ``config.head`` for ``keypoints [B, K, 2]`` in input pixels.

    - heatmap: ``losses.heatmap_mse_loss`` against unbiased Gaussians of ``heatmap_sigma``
      map pixels, times 1000 (the MSE of peak-1 maps is small; scaled for readability).
    - integral: ``losses.integral_l1_loss`` in map pixels, plus, with
      ``integral_heatmap_weight > 0``, that weight times the KL divergence from the
      normalised unbiased Gaussian of ``heatmap_sigma`` map pixels at the target to the
      softmax of the maps, averaged over labelled keypoints (the distribution regulariser
      of DSNT, Nibali et al. 2018, arXiv 1801.07372: it shapes the softmax into one peak at
      the keypoint, so the L1 no longer has to find it from a flat start).
    - simcc: ``losses.simcc_kl_loss`` (beta 1) against Gaussian labels of ``simcc_sigma``
      bins.
    - rle: ``losses.rle_loss`` on coordinates normalised by the input size, with
      ``flow_log_prob`` (the model's ``flow``).

    Args:
      outputs: the model's output dict.
      keypoints: ``[B, K, 2]`` targets in input pixels.
      weights: ``[B, K]`` target weights (labelled and inside the crop).
      config: the model's :class:`PoseConfig`.

    Returns:
      Scalar loss.
    """
    s = config.map_stride
    if config.head == "heatmap":
        target = gaussian_heatmaps(
            keypoints / s, weights, config.map_size, sigma=heatmap_sigma, unbiased=True
        )
        return 1000.0 * heatmap_mse_loss(outputs["heatmaps"], target, weights)
    if config.head == "integral":
        loss = integral_l1_loss(outputs["keypoints"] / s, keypoints / s, weights)
        if integral_heatmap_weight:
            loss = loss + integral_heatmap_weight * _heatmap_kl(
                outputs["heatmaps"], keypoints / s, weights, config.map_size, heatmap_sigma
            )
        return loss
    if config.head == "simcc":
        tx, ty = simcc_encode(
            keypoints,
            weights,
            config.input_size,
            split_ratio=config.split_ratio,
            sigma=simcc_sigma,
            unbiased=True,
        )
        return simcc_kl_loss(outputs["simcc_x"], outputs["simcc_y"], tx, ty, weights, beta=1.0)
    size = jnp.array(config.input_size[::-1], keypoints.dtype)
    return rle_loss(
        outputs["keypoints"] / size,
        outputs["sigma_logits"],
        keypoints / size,
        weights,
        log_prob=flow_log_prob,
    )


def _heatmap_kl(
    logits: jax.Array, keypoints: jax.Array, weights: jax.Array, size, sigma: float
) -> jax.Array:
    """``KL(t || softmax(logits))`` per keypoint, ``t`` the normalised Gaussian at the
    target; mean over the keypoints with weight > 0 (0 when there are none)."""
    t = gaussian_heatmaps(keypoints, None, size, sigma=sigma, unbiased=True)
    b, k = weights.shape
    t = t.reshape(b, -1, k)
    t = t / jnp.maximum(jnp.sum(t, axis=1, keepdims=True), 1e-12)
    logp = jax.nn.log_softmax(logits.reshape(b, -1, k), axis=1)
    kl = jnp.sum(jnp.where(t > 0, t * (jnp.log(jnp.maximum(t, 1e-30)) - logp), 0.0), axis=1)
    return jnp.sum(kl * weights) / jnp.maximum(jnp.sum(weights), 1.0)


@export("models.pose_decode")
def pose_decode(
    outputs: dict[str, jax.Array],
    config: PoseConfig,
    *,
    refine: str = "dark",
    blur_sigma: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Keypoints ``[B, K, 2]`` in input pixels and scores ``[B, K]`` from the outputs.

    heatmap: ``keypoints.heatmap_argmax(refine=refine)``, score = peak value; integral:
    the soft-argmax already in the outputs, score = the largest softmax probability;
    simcc: ``keypoints.simcc_decode``, score = the smaller of the two softmax maxima;
    rle: the regressed coordinates, score = ``1 - mean sigma`` (mmpose's RLE score).
    """
    if config.head == "heatmap":
        xy, score = heatmap_argmax(outputs["heatmaps"], refine=refine, blur_sigma=blur_sigma)
        return xy * config.map_stride, score
    if config.head == "integral":
        h = outputs["heatmaps"]
        p = jax.nn.softmax(h.reshape(h.shape[0], -1, h.shape[-1]), axis=1)
        return outputs["keypoints"], _first_max(p, 1)  # NaN for a NaN map
    if config.head == "simcc":
        px = jax.nn.softmax(outputs["simcc_x"], -1)
        py = jax.nn.softmax(outputs["simcc_y"], -1)
        return simcc_decode(px, py, split_ratio=config.split_ratio)
    sigma = jax.nn.sigmoid(outputs["sigma_logits"])
    return outputs["keypoints"], 1.0 - jnp.mean(sigma, axis=-1)
