"""Multi-head attention module: projections around ``ops.multi_head_attention``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.ops.attention import multi_head_attention


@export("nn.MultiHeadAttention")
class MultiHeadAttention(nnx.Module):
    """Multi-head attention with separate q/k/v/out projections and a key padding mask.

    The functional twin is ``ops.multi_head_attention``; this module holds the four
    ``[D, D]`` projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, the layout
    of HF transformers' DETR) and the dropout stream for the attention weights.
    Mask convention: True = attend (real key), as ``pixel_mask``.

    Args:
      features: model width ``D``.
      num_heads: heads; must divide ``D``.
      dropout_rate: dropout on the attention weights in training.
      dtype: computation dtype (``None`` = float32 parameters' dtype).
      rngs: parameter initialisation and, when ``dropout_rate > 0``, dropout keys.
    """

    def __init__(
        self,
        features: int,
        num_heads: int,
        *,
        dropout_rate: float = 0.0,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if features % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide features={features}")
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        init = nnx.initializers.xavier_uniform()

        def linear() -> nnx.Linear:
            return nnx.Linear(features, features, kernel_init=init, dtype=dtype, rngs=rngs)

        self.q_proj = linear()
        self.k_proj = linear()
        self.v_proj = linear()
        self.out_proj = linear()
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    def __call__(
        self,
        query: jax.Array,
        key: jax.Array,
        value: jax.Array,
        *,
        key_padding_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """``query``: ``[B, Lq, D]``, ``key`` / ``value``: ``[B, Lk, D]`` -> ``[B, Lq, D]``."""
        rate = 0.0 if deterministic else self.dropout_rate
        out = multi_head_attention(
            self.q_proj(query),
            self.k_proj(key),
            self.v_proj(value),
            num_heads=self.num_heads,
            key_padding_mask=key_padding_mask,
            dropout_rate=rate,
            dropout_rng=self.rngs() if rate > 0 else None,
        )
        return self.out_proj(out)
