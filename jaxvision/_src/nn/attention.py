"""Multi-head attention module: projections around ``ops.multi_head_attention``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.nn.linear import xavier_linear
from jaxvision._src.ops.attention import multi_head_attention


@export("nn.MaskedMultiHeadAttention", deprecated=("nn.MultiHeadAttention",))
class MaskedMultiHeadAttention(nnx.Module):
    """Multi-head attention with separate q/k/v/out projections and a key padding mask.

    The functional twin is ``ops.multi_head_attention``; this module holds the four
    ``[D, D]`` projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, the layout
    of HF transformers' DETR) and the dropout stream for the attention weights.
    Mask convention: True = attend (real key), as ``pixel_mask``. Not ``nnx``'s
    ``MultiHeadAttention``: that one takes ``(num_heads, in_features)`` and a mask of
    ``[B, H, Lq, Lk]``; this one ``(features, num_heads)`` and a ``[B, Lk]`` key mask.

    Dropout is module state, as in ``nnx.Dropout``: ``deterministic=True`` (the default,
    eval mode) turns it off; ``model.train()`` / ``model.eval()`` set it.

    Args:
      features: model width ``D``.
      num_heads: heads; must divide ``D``.
      dropout_rate: dropout on the attention weights in training.
      deterministic: start in eval mode (no dropout).
      dtype: computation dtype (``None`` = float32 parameters' dtype).
      rngs: parameter initialisation and, when ``dropout_rate > 0``, dropout keys.

    Examples:
      >>> attn = MaskedMultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
      >>> x = jnp.ones((1, 3, 8))
      >>> attn(x, x, x, key_padding_mask=jnp.array([[True, True, False]])).shape
      (1, 3, 8)
    """

    def __init__(
        self,
        features: int,
        num_heads: int,
        *,
        dropout_rate: float = 0.0,
        deterministic: bool = True,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if features % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide features={features}")
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.deterministic = deterministic
        self.q_proj = xavier_linear(features, features, dtype=dtype, rngs=rngs)
        self.k_proj = xavier_linear(features, features, dtype=dtype, rngs=rngs)
        self.v_proj = xavier_linear(features, features, dtype=dtype, rngs=rngs)
        self.out_proj = xavier_linear(features, features, dtype=dtype, rngs=rngs)
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    def __call__(
        self,
        query: ArrayLike,
        key: ArrayLike,
        value: ArrayLike,
        *,
        key_padding_mask: ArrayLike | None = None,
        deterministic: bool | None = None,
    ) -> jax.Array:
        """``query``: ``[B, Lq, D]``, ``key`` / ``value``: ``[B, Lk, D]`` -> ``[B, Lq, D]``.

        ``deterministic`` overrides the module's mode for this call (as ``nnx.Dropout``).
        """
        if deterministic is None:
            deterministic = self.deterministic
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
