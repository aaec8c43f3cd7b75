"""Position-encoding modules wrapping ``ops.sine_position_encoding`` and its learned twin."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.ops.position_encoding import learned_position_encoding, sine_position_encoding


@export("nn.SinePositionEncoding")
class SinePositionEncoding(nnx.Module):
    """DETR's sine encoding of the real part of a padded feature map (no parameters).

    Args:
      num_pos_feats: channels per axis; output has ``2 * num_pos_feats``.
      temperature, normalize, scale: see ``ops.sine_position_encoding``.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        *,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
    ) -> None:
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale

    def __call__(self, mask: jax.Array, dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """``mask``: ``[B, H, W]`` (True = real) -> ``[B, H, W, 2 * num_pos_feats]``."""
        return sine_position_encoding(
            mask, self.num_pos_feats, self.temperature, self.normalize, self.scale, dtype=dtype
        )


@export("nn.LearnedPositionEncoding")
class LearnedPositionEncoding(nnx.Module):
    """DETR's learned encoding: row and column tables of ``max_size`` entries each.

    Args:
      num_pos_feats: channels per axis; output has ``2 * num_pos_feats``.
      max_size: largest feature-map height / width (50 in DETR).
      rngs: initialisation (uniform in [0, 1), as DETR).
    """

    def __init__(self, num_pos_feats: int = 128, *, max_size: int = 50, rngs: nnx.Rngs) -> None:
        self.row_embed = nnx.Param(jax.random.uniform(rngs.params(), (max_size, num_pos_feats)))
        self.col_embed = nnx.Param(jax.random.uniform(rngs.params(), (max_size, num_pos_feats)))

    def __call__(self, mask: jax.Array, dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """``mask``: ``[B, H, W]`` -> ``[B, H, W, 2 * num_pos_feats]``."""
        pos = learned_position_encoding(mask, self.row_embed[...], self.col_embed[...])
        return pos.astype(dtype)
