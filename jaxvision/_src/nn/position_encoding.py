"""Position-encoding modules wrapping ``ops.sine_position_encoding`` and its learned twin."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.ops.position_encoding import learned_position_encoding, sine_position_encoding


@export("nn.SinePositionEncoding")
class SinePositionEncoding(nnx.Module):
    """DETR's sine encoding of the real part of a padded feature map (no parameters).

    Args:
      num_pos_feats: channels per axis; output has ``2 * num_pos_feats``.
      temperature, normalize, scale: see ``ops.sine_position_encoding``.
      dtype: output dtype (``None``: float32).

    Examples:
      >>> SinePositionEncoding(4)(jnp.ones((1, 2, 3), bool)).shape
      (1, 2, 3, 8)
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        *,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        dtype: jnp.dtype | None = None,
    ) -> None:
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.dtype = dtype

    def __call__(self, mask: ArrayLike) -> jax.Array:
        """``mask``: ``[B, H, W]`` (True = real) -> ``[B, H, W, 2 * num_pos_feats]``."""
        return sine_position_encoding(
            mask,
            self.num_pos_feats,
            temperature=self.temperature,
            normalize=self.normalize,
            scale=self.scale,
            dtype=self.dtype or jnp.float32,
        )


@export("nn.LearnedPositionEncoding")
class LearnedPositionEncoding(nnx.Module):
    """DETR's learned encoding: row and column tables of ``max_size`` entries each.

    Args:
      num_pos_feats: channels per axis; output has ``2 * num_pos_feats``.
      max_size: largest feature-map height / width (50 in DETR).
      dtype: output dtype (``None``: float32; the tables stay float32).
      rngs: initialisation (uniform in [0, 1), as DETR).

    Examples:
      >>> LearnedPositionEncoding(4, max_size=5, rngs=nnx.Rngs(0))(jnp.ones((1, 2, 3), bool)).shape
      (1, 2, 3, 8)
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        *,
        max_size: int = 50,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype
        self.row_embed = nnx.Param(jax.random.uniform(rngs.params(), (max_size, num_pos_feats)))
        self.col_embed = nnx.Param(jax.random.uniform(rngs.params(), (max_size, num_pos_feats)))

    def __call__(self, mask: ArrayLike) -> jax.Array:
        """``mask``: ``[B, H, W]`` -> ``[B, H, W, 2 * num_pos_feats]``."""
        pos = learned_position_encoding(mask, self.row_embed[...], self.col_embed[...])
        return pos.astype(self.dtype or jnp.float32)
