"""2-D position encodings for image features that respect a padding mask.

Reference: Carion et al., "End-to-End Object Detection with Transformers" (DETR), ECCV 2020,
arXiv:2005.12872, appendix A.4; the sine encoding follows Vaswani et al. 2017.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvision._src.export import export


def _check_mask(pixel_mask: ArrayLike, name: str = "pixel_mask") -> jax.Array:
    pixel_mask = jnp.asarray(pixel_mask)
    if pixel_mask.ndim != 3:
        raise ValueError(f"{name} must have shape [B, H, W], got shape {pixel_mask.shape}")
    return pixel_mask


@export("ops.downsample_pixel_mask")
def downsample_pixel_mask(pixel_mask: ArrayLike, size: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour resize of a padding mask to a feature-map size.

    Row ``i`` of the output takes input row ``floor(i * H / h)``, the rule of PyTorch's
    ``F.interpolate(mode="nearest")`` that DETR and HF transformers use, so that feature
    cells map to the same pixels as in the peers.

    Args:
      pixel_mask: ``[B, H, W]`` bool, True where the pixel is real (not padding).
      size: ``(h, w)`` of the feature map.

    Returns:
      ``[B, h, w]`` bool.

    Examples:
      >>> mask = jnp.ones((1, 4, 6), bool).at[0, :, 3:].set(False)
      >>> downsample_pixel_mask(mask, (2, 3))
      Array([[[ True,  True, False],
              [ True,  True, False]]], dtype=bool)
    """
    pixel_mask = _check_mask(pixel_mask)
    h, w = size
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    big_h, big_w = pixel_mask.shape[1:]
    # PyTorch computes the source index in float32 as floor(dst * (in / out)).
    rows = np.floor(np.arange(h, dtype=np.float32) * np.float32(big_h / h)).astype(np.int32)
    cols = np.floor(np.arange(w, dtype=np.float32) * np.float32(big_w / w)).astype(np.int32)
    rows = np.minimum(rows, big_h - 1)
    cols = np.minimum(cols, big_w - 1)
    return pixel_mask.astype(bool)[:, rows][:, :, cols]


@export("ops.sine_position_encoding")
def sine_position_encoding(
    pixel_mask: ArrayLike,
    num_pos_feats: int = 128,
    *,
    temperature: float = 10000.0,
    normalize: bool = True,
    scale: float = 2 * math.pi,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """DETR's sine position encoding of the real (unpadded) part of each image.

    Positions are the cumulative count of real pixels along each axis (1-based), so that
    padding does not shift them; with ``normalize`` they are divided by the count of real
    rows / columns and multiplied by ``scale``. Each of ``y`` and ``x`` gives
    ``num_pos_feats`` channels ``[sin(p / t_0), cos(p / t_0), sin(p / t_1), ...]`` with
    ``t_i = temperature ** (2 * i / num_pos_feats)``; the output concatenates ``y`` then
    ``x`` (the convention of DETR and HF transformers). Padded cells get finite values that
    attention masks out anyway; an all-padding image gives zeros, not NaN.

    Args:
      pixel_mask: ``[B, H, W]`` bool, True where the cell is real (not padding).
      num_pos_feats: channels per axis (even); the output has ``2 * num_pos_feats``.
      temperature: wavelength base.
      normalize: divide positions by the real extent and multiply by ``scale``.
      scale: the normalised range, 2*pi in DETR.
      dtype: output dtype.

    Returns:
      ``[B, H, W, 2 * num_pos_feats]`` encoding.

    Examples:
      >>> sine_position_encoding(jnp.ones((1, 2, 3), bool), 4).shape
      (1, 2, 3, 8)
    """
    pixel_mask = _check_mask(pixel_mask)
    if num_pos_feats <= 0 or num_pos_feats % 2:
        raise ValueError(f"num_pos_feats must be positive and even, got {num_pos_feats}")
    mask = pixel_mask.astype(jnp.float32)
    y_embed = jnp.cumsum(mask, axis=1)
    x_embed = jnp.cumsum(mask, axis=2)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = np.arange(num_pos_feats, dtype=np.float32)
    dim_t = np.float32(temperature) ** (2 * np.floor(dim_t / 2) / num_pos_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    b, h, w = pixel_mask.shape
    pos_x = jnp.stack([jnp.sin(pos_x[..., 0::2]), jnp.cos(pos_x[..., 1::2])], axis=-1)
    pos_y = jnp.stack([jnp.sin(pos_y[..., 0::2]), jnp.cos(pos_y[..., 1::2])], axis=-1)
    pos = jnp.concatenate(
        [pos_y.reshape(b, h, w, num_pos_feats), pos_x.reshape(b, h, w, num_pos_feats)], axis=-1
    )
    return pos.astype(dtype)


@export("ops.learned_position_encoding")
def learned_position_encoding(
    pixel_mask: ArrayLike, row_table: ArrayLike, col_table: ArrayLike
) -> jax.Array:
    """DETR's learned 2-D position encoding: a row and a column embedding per cell.

    The output concatenates the column (``x``) embedding then the row (``y``) embedding,
    as DETR and HF transformers do. Positions are absolute indices into the padded
    feature map (as in the peers); the mask only fixes the batch and spatial shape.

    Args:
      pixel_mask: ``[B, H, W]`` mask of the feature map (True = real cell).
      row_table: ``[R, F]`` row embeddings, ``R >= H``.
      col_table: ``[C, F]`` column embeddings, ``C >= W``.

    Returns:
      ``[B, H, W, 2 * F]`` encoding.

    Examples:
      >>> rows, cols = jnp.zeros((5, 4)), jnp.ones((5, 4))
      >>> learned_position_encoding(jnp.ones((1, 2, 3), bool), rows, cols).shape
      (1, 2, 3, 8)
    """
    pixel_mask = _check_mask(pixel_mask)
    row_table, col_table = jnp.asarray(row_table), jnp.asarray(col_table)
    b, h, w = pixel_mask.shape
    if row_table.ndim != 2 or col_table.ndim != 2 or row_table.shape[1] != col_table.shape[1]:
        raise ValueError(
            f"row_table and col_table must be [R, F] and [C, F], got {row_table.shape} and "
            f"{col_table.shape}"
        )
    if h > row_table.shape[0] or w > col_table.shape[0]:
        raise ValueError(
            f"feature map {h}x{w} exceeds the learned tables ({row_table.shape[0]} rows, "
            f"{col_table.shape[0]} columns)"
        )
    f = row_table.shape[1]
    x_emb = jnp.broadcast_to(col_table[None, :w, :], (h, w, f))
    y_emb = jnp.broadcast_to(row_table[:h, None, :], (h, w, f))
    pos = jnp.concatenate([x_emb, y_emb], axis=-1)
    return jnp.broadcast_to(pos[None], (b, h, w, 2 * f))
