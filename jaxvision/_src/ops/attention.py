"""Multi-head scaled dot-product attention with a key padding mask.

Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("ops.multi_head_attention")
def multi_head_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    *,
    num_heads: int,
    key_padding_mask: ArrayLike | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: ArrayLike | None = None,
) -> jax.Array:
    """Attention of already-projected queries over keys, split into ``num_heads`` heads.

    ``softmax(q k^T / sqrt(d_head)) v`` per head, with masked keys excluded from the
    softmax. The in- and out-projections are not part of this function (they are the
    parameters of ``nn.MaskedMultiHeadAttention``).

    Mask convention: ``key_padding_mask`` is True for keys that may be attended (real
    pixels), like ``pixel_mask``; this is the opposite of PyTorch's ``key_padding_mask``
    (True = ignore). A query whose keys are all masked attends uniformly to all keys
    (finite output, as when every score is equal) instead of producing NaN.

    Args:
      query: ``[B, Lq, D]``.
      key: ``[B, Lk, D]``.
      value: ``[B, Lk, Dv]``.
      num_heads: number of heads; must divide ``D`` and ``Dv``.
      key_padding_mask: optional ``[B, Lk]`` bool, True = attend.
      dropout_rate: dropout on the attention weights (training only).
      dropout_rng: PRNG key, required when ``dropout_rate > 0``.

    Returns:
      ``[B, Lq, Dv]`` in the dtype of ``query``; softmax runs in float32.

    Examples:
      >>> q = jnp.ones((1, 2, 4))
      >>> kv = jnp.arange(12.0).reshape(1, 3, 4)
      >>> real = jnp.array([[True, True, False]])  # the third key is padding
      >>> multi_head_attention(q, kv, kv, num_heads=2, key_padding_mask=real)
      Array([[[3.9861, 4.9861, 5.9861, 6.9861],
              [3.9861, 4.9861, 5.9861, 6.9861]]], dtype=float32)
    """
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if key_padding_mask is not None:
        key_padding_mask = jnp.asarray(key_padding_mask)
    if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
        raise ValueError(
            f"query, key and value must be [B, L, D], got {query.shape}, {key.shape}, {value.shape}"
        )
    b, lq, d = query.shape
    if key.shape[0] != b or value.shape[0] != b:
        raise ValueError(
            f"batch sizes differ: query {query.shape}, key {key.shape}, value {value.shape}"
        )
    if key.shape[1] != value.shape[1]:
        raise ValueError(f"key and value lengths differ: {key.shape} vs {value.shape}")
    if key.shape[2] != d:
        raise ValueError(f"query and key widths differ: {query.shape} vs {key.shape}")
    if num_heads <= 0 or d % num_heads or value.shape[2] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide D={d} and Dv={value.shape[2]}")
    lk = key.shape[1]
    if key_padding_mask is not None and key_padding_mask.shape != (b, lk):
        raise ValueError(
            f"key_padding_mask must have shape {(b, lk)}, got {key_padding_mask.shape}"
        )
    if dropout_rate > 0.0 and dropout_rng is None:
        raise ValueError("dropout_rng is required when dropout_rate > 0")
    dh = d // num_heads
    q = query.reshape(b, lq, num_heads, dh)
    k = key.reshape(b, lk, num_heads, dh)
    v = value.reshape(b, lk, num_heads, value.shape[2] // num_heads)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q * jnp.asarray(dh**-0.5, q.dtype), k)
    scores = scores.astype(jnp.float32)
    if key_padding_mask is not None:
        scores = jnp.where(key_padding_mask[:, None, None, :], scores, jnp.float32(-1e30))
        all_masked = ~jnp.any(key_padding_mask, axis=-1)[:, None, None, None]
        scores = jnp.where(all_masked, 0.0, scores)
    weights = jax.nn.softmax(scores, axis=-1)
    if dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(value.dtype), v)
    return out.reshape(b, lq, -1).astype(query.dtype)
