"""Batch normalisation with fixed statistics and affine parameters (inference-mode BN).

Reference: Ioffe & Szegedy, "Batch Normalization", ICML 2015; DETR (arXiv:2005.12872)
freezes every BatchNorm of its ResNet backbone this way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("ops.frozen_batch_norm")
def frozen_batch_norm(
    x: ArrayLike,
    scale: ArrayLike,
    bias: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    *,
    epsilon: float = 1e-5,
) -> jax.Array:
    """``(x - mean) / sqrt(var + epsilon) * scale + bias`` over the last (channel) axis.

    Written as one multiply-add, ``x * s + (bias - mean * s)`` with
    ``s = scale * rsqrt(var + epsilon)``, the form torchvision / HF use, so that XLA fuses
    it into the preceding convolution. ``epsilon`` 1e-5 is the value of both peers.

    Args:
      x: ``[..., C]`` channels-last features.
      scale, bias, mean, var: ``[C]`` each.
      epsilon: added to ``var``; keeps zero variances finite.

    Returns:
      ``[..., C]`` in the dtype of ``x`` (statistics are combined in float32).

    Examples:
      >>> x = jnp.array([[1.0, 2.0]])
      >>> mean, var = jnp.array([1.0, 0.0]), jnp.array([1.0, 4.0])
      >>> frozen_batch_norm(x, jnp.ones(2), jnp.zeros(2), mean, var, epsilon=0.0)
      Array([[0., 1.]], dtype=float32)
    """
    x, scale, bias, mean, var = (jnp.asarray(a) for a in (x, scale, bias, mean, var))
    c = x.shape[-1]
    for name, arr in (("scale", scale), ("bias", bias), ("mean", mean), ("var", var)):
        if arr.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},) to match x {x.shape}, got {arr.shape}")
    s = scale.astype(jnp.float32) * jax.lax.rsqrt(var.astype(jnp.float32) + epsilon)
    b = bias.astype(jnp.float32) - mean.astype(jnp.float32) * s
    return x * s.astype(x.dtype) + b.astype(x.dtype)
