"""DETR's transformer encoder and decoder layers (post-norm by default, pre-norm option).

Reference: Carion et al., DETR, arXiv:2005.12872, section 3.2 and figure 10: position
encodings are added to queries and keys (never to values) in every attention layer, and
the object queries' learned embeddings are added to the decoder's queries.
Sequences are ``[B, L, D]``; masks are True for real (attendable) positions.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.nn.attention import MaskedMultiHeadAttention
from jaxvision._src.nn.linear import xavier_linear


def _layer_norm(d: int, dtype: jnp.dtype | None, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(d, epsilon=1e-5, dtype=dtype, rngs=rngs)


def _dropout(rate: float, rngs: nnx.Rngs) -> nnx.Dropout:
    # Eval mode until model.train(): DETR's call without a mode change is inference.
    return nnx.Dropout(rate, deterministic=True, rngs=rngs)


def residual(
    x: jax.Array,
    sublayer: Callable[[jax.Array], jax.Array],
    norm: nnx.LayerNorm,
    dropout: nnx.Dropout,
    *,
    pre_norm: bool,
) -> jax.Array:
    """One residual block: ``x + dropout(sublayer(norm(x)))`` (pre-norm) or
    ``norm(x + dropout(sublayer(x)))`` (post-norm, the DETR default)."""
    y = sublayer(norm(x) if pre_norm else x)
    x = x + dropout(y)
    return x if pre_norm else norm(x)


class FeedForward(nnx.Module):
    """``linear2(dropout(relu(linear1(x))))``: ``[..., D]`` -> ``[..., D]``."""

    def __init__(
        self, d: int, ffn_dim: int, dropout: float, dtype: jnp.dtype | None, rngs: nnx.Rngs
    ) -> None:
        self.linear1 = xavier_linear(d, ffn_dim, dtype=dtype, rngs=rngs)
        self.linear2 = xavier_linear(ffn_dim, d, dtype=dtype, rngs=rngs)
        self.dropout = _dropout(dropout, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear2(self.dropout(jax.nn.relu(self.linear1(x))))


def _attention(d: int, num_heads: int, rate: float, dtype: jnp.dtype | None, rngs: nnx.Rngs):
    return MaskedMultiHeadAttention(d, num_heads, dropout_rate=rate, dtype=dtype, rngs=rngs)


class EncoderLayer(nnx.Module):
    """Self-attention (position added to q and k) then feed-forward, each with a residual.

    Train / eval is module state (``nnx.Dropout`` and the attention's ``deterministic``),
    set by ``model.train()`` / ``model.eval()``.
    """

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
        self.self_attn = _attention(d, num_heads, attention_dropout, dtype, rngs)
        self.ffn = FeedForward(d, ffn_dim, dropout, dtype, rngs)
        self.norm1 = _layer_norm(d, dtype, rngs)
        self.norm2 = _layer_norm(d, dtype, rngs)
        self.dropout1 = _dropout(dropout, rngs)
        self.dropout2 = _dropout(dropout, rngs)

    def __call__(self, src: jax.Array, pos: jax.Array, mask: jax.Array) -> jax.Array:
        """``src``, ``pos``: ``[B, L, D]``; ``mask``: ``[B, L]`` -> ``[B, L, D]``."""
        pre = self.normalize_before

        def attend(x: jax.Array) -> jax.Array:
            return self.self_attn(x + pos, x + pos, x, key_padding_mask=mask)

        src = residual(src, attend, self.norm1, self.dropout1, pre_norm=pre)
        return residual(src, self.ffn, self.norm2, self.dropout2, pre_norm=pre)


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
        self.self_attn = _attention(d, num_heads, attention_dropout, dtype, rngs)
        self.cross_attn = _attention(d, num_heads, attention_dropout, dtype, rngs)
        self.ffn = FeedForward(d, ffn_dim, dropout, dtype, rngs)
        self.norm1 = _layer_norm(d, dtype, rngs)
        self.norm2 = _layer_norm(d, dtype, rngs)
        self.norm3 = _layer_norm(d, dtype, rngs)
        self.dropout1 = _dropout(dropout, rngs)
        self.dropout2 = _dropout(dropout, rngs)
        self.dropout3 = _dropout(dropout, rngs)

    def __call__(
        self,
        tgt: jax.Array,
        memory: jax.Array,
        pos: jax.Array,
        query_pos: jax.Array,
        memory_mask: jax.Array,
        *,
        query_groups: int = 1,
    ) -> jax.Array:
        """``tgt``, ``query_pos``: ``[B, Q, D]``; ``memory``, ``pos``: ``[B, L, D]``;
        ``memory_mask``: ``[B, L]`` -> ``[B, Q, D]``. With ``query_groups = G`` the ``Q``
        queries are ``G`` consecutive groups that attend only to their own group in the
        self-attention (Group DETR); cross-attention and the feed-forward are per query."""
        pre = self.normalize_before
        b, q, d = tgt.shape
        if q % query_groups:
            raise ValueError(f"{q} queries do not split into query_groups={query_groups}")

        def attend_queries(x: jax.Array) -> jax.Array:
            x = x.reshape(b * query_groups, q // query_groups, d)
            qp = query_pos.reshape(x.shape)
            return self.self_attn(x + qp, x + qp, x).reshape(b, q, d)

        def attend_memory(x: jax.Array) -> jax.Array:
            return self.cross_attn(
                x + query_pos, memory + pos, memory, key_padding_mask=memory_mask
            )

        tgt = residual(tgt, attend_queries, self.norm1, self.dropout1, pre_norm=pre)
        tgt = residual(tgt, attend_memory, self.norm2, self.dropout2, pre_norm=pre)
        return residual(tgt, self.ffn, self.norm3, self.dropout3, pre_norm=pre)
