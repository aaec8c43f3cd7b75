"""DETR's transformer encoder and decoder layers (post-norm by default, pre-norm option).

Reference: Carion et al., DETR, arXiv:2005.12872, section 3.2 and figure 10: position
encodings are added to queries and keys (never to values) in every attention layer, and
the object queries' learned embeddings are added to the decoder's queries.
Sequences are ``[B, L, D]``; masks are True for real (attendable) positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.nn.attention import MultiHeadAttention


def _linear(cin: int, cout: int, dtype: jnp.dtype | None, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        cin, cout, kernel_init=nnx.initializers.xavier_uniform(), dtype=dtype, rngs=rngs
    )


def _layer_norm(d: int, dtype: jnp.dtype | None, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)


class FeedForward(nnx.Module):
    """``linear2(dropout(relu(linear1(x))))``: ``[..., D]`` -> ``[..., D]``."""

    def __init__(
        self, d: int, ffn_dim: int, dropout: float, dtype: jnp.dtype | None, rngs: nnx.Rngs
    ) -> None:
        self.linear1 = _linear(d, ffn_dim, dtype, rngs)
        self.linear2 = _linear(ffn_dim, d, dtype, rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        h = self.dropout(jax.nn.relu(self.linear1(x)), deterministic=deterministic)
        return self.linear2(h)


class EncoderLayer(nnx.Module):
    """Self-attention (position added to q and k) then feed-forward, each with a residual."""

    def __init__(
        self,
        d: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float,
        attention_dropout: float,
        normalize_before: bool,
        dtype: jnp.dtype | None,
        rngs: nnx.Rngs,
    ) -> None:
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(
            d, num_heads, dropout_rate=attention_dropout, dtype=dtype, rngs=rngs
        )
        self.ffn = FeedForward(d, ffn_dim, dropout, dtype, rngs)
        self.norm1 = _layer_norm(d, dtype, rngs)
        self.norm2 = _layer_norm(d, dtype, rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)

    def __call__(
        self, src: jax.Array, pos: jax.Array, mask: jax.Array, *, deterministic: bool
    ) -> jax.Array:
        """``src``, ``pos``: ``[B, L, D]``; ``mask``: ``[B, L]`` -> ``[B, L, D]``."""
        x = self.norm1(src) if self.normalize_before else src
        qk = x + pos
        x = self.self_attn(qk, qk, x, key_padding_mask=mask, deterministic=deterministic)
        src = src + self.dropout1(x, deterministic=deterministic)
        if not self.normalize_before:
            src = self.norm1(src)
        x = self.norm2(src) if self.normalize_before else src
        x = self.ffn(x, deterministic=deterministic)
        src = src + self.dropout2(x, deterministic=deterministic)
        if not self.normalize_before:
            src = self.norm2(src)
        return src


class DecoderLayer(nnx.Module):
    """Query self-attention, cross-attention to the encoder memory, then feed-forward."""

    def __init__(
        self,
        d: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float,
        attention_dropout: float,
        normalize_before: bool,
        dtype: jnp.dtype | None,
        rngs: nnx.Rngs,
    ) -> None:
        self.normalize_before = normalize_before
        self.self_attn = MultiHeadAttention(
            d, num_heads, dropout_rate=attention_dropout, dtype=dtype, rngs=rngs
        )
        self.cross_attn = MultiHeadAttention(
            d, num_heads, dropout_rate=attention_dropout, dtype=dtype, rngs=rngs
        )
        self.ffn = FeedForward(d, ffn_dim, dropout, dtype, rngs)
        self.norm1 = _layer_norm(d, dtype, rngs)
        self.norm2 = _layer_norm(d, dtype, rngs)
        self.norm3 = _layer_norm(d, dtype, rngs)
        self.dropout1 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout2 = nnx.Dropout(dropout, rngs=rngs)
        self.dropout3 = nnx.Dropout(dropout, rngs=rngs)

    def __call__(
        self,
        tgt: jax.Array,
        memory: jax.Array,
        pos: jax.Array,
        query_pos: jax.Array,
        memory_mask: jax.Array,
        *,
        deterministic: bool,
    ) -> jax.Array:
        """``tgt``, ``query_pos``: ``[B, Q, D]``; ``memory``, ``pos``: ``[B, L, D]``;
        ``memory_mask``: ``[B, L]`` -> ``[B, Q, D]``."""
        pre = self.normalize_before
        x = self.norm1(tgt) if pre else tgt
        qk = x + query_pos
        x = self.self_attn(qk, qk, x, deterministic=deterministic)
        tgt = tgt + self.dropout1(x, deterministic=deterministic)
        if not pre:
            tgt = self.norm1(tgt)
        x = self.norm2(tgt) if pre else tgt
        x = self.cross_attn(
            x + query_pos,
            memory + pos,
            memory,
            key_padding_mask=memory_mask,
            deterministic=deterministic,
        )
        tgt = tgt + self.dropout2(x, deterministic=deterministic)
        if not pre:
            tgt = self.norm2(tgt)
        x = self.norm3(tgt) if pre else tgt
        x = self.ffn(x, deterministic=deterministic)
        tgt = tgt + self.dropout3(x, deterministic=deterministic)
        if not pre:
            tgt = self.norm3(tgt)
        return tgt
