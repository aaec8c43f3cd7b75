"""Frozen BatchNorm module: fixed statistics held outside the trainable parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.ops.frozen_batch_norm import frozen_batch_norm


@export("nn.FrozenStat")
class FrozenStat(nnx.Variable):
    """A variable that is never trained (frozen BatchNorm scale, bias, mean and variance).

    Not an ``nnx.Param``: ``nnx.grad``, ``nnx.Optimizer(..., wrt=nnx.Param)`` and
    ``nnx.split(model, nnx.Param, ...)`` leave it out.
    """


@export("nn.FrozenBatchNorm")
class FrozenBatchNorm(nnx.Module):
    """BatchNorm with frozen statistics and affine parameters, channels-last.

    The functional twin is ``ops.frozen_batch_norm``. All four ``[C]`` arrays are
    ``FrozenStat`` variables (the HF / torchvision frozen BN keeps them as buffers), so
    that a parameter count over ``nnx.Param`` matches the peers' ``num_parameters()``.

    Args:
      num_features: channels ``C``.
      epsilon: 1e-5, as in torchvision and HF.

    Examples:
      >>> bn = FrozenBatchNorm(2)
      >>> bn(jnp.array([[1.0, -1.0]]))
      Array([[ 1.0000, -1.0000]], dtype=float32)
    """

    def __init__(self, num_features: int, *, epsilon: float = 1e-5) -> None:
        self.epsilon = epsilon
        self.scale = FrozenStat(jnp.ones((num_features,), jnp.float32))
        self.bias = FrozenStat(jnp.zeros((num_features,), jnp.float32))
        self.mean = FrozenStat(jnp.zeros((num_features,), jnp.float32))
        self.var = FrozenStat(jnp.ones((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x``: ``[..., C]`` -> ``[..., C]``."""
        return frozen_batch_norm(
            x, self.scale[...], self.bias[...], self.mean[...], self.var[...], epsilon=self.epsilon
        )
