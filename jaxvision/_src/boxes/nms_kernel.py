"""Greedy NMS for CUDA GPUs: a suppression bitmask in parallel, then one sequential scan.

The blocked algorithm of :mod:`nms` runs hundreds of dependent ``lax.while_loop``
iterations; on a GPU each one costs kernel launches and a copy of the loop predicate to the
host, which made it slower than torchvision there. This path has two steps:

1. XLA computes, for the score-sorted boxes, a bitmask ``mask[i, w]`` whose bit ``b`` says
   that box ``i`` suppresses box ``j = 32 w + b`` (``i < j`` and their IoU is above the
   threshold). Every pair is independent, so this is one parallel pass, the overlap test
   fused into the packing of 32 tests into a word.
2. One Pallas (Triton) program walks the boxes in order, keeping a ``removed`` bit vector:
   box ``i`` is kept when its bit is clear, and then its mask row is OR-ed into the vector.
   The word holding the current box's bit is carried as a scalar, so a step needs no
   reduction over the vector; the mask rows are read in order, which lets the compiler
   prefetch them.

This is the scheme of torchvision's CUDA NMS, which does step 2 on the host after copying
the mask there. The result is the same greedy selection as :func:`nms`'s other path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jaxvision._src.boxes.terms import nms_overlaps
from jaxvision._src.jax_compat import output_like

# Boxes the bitmask path takes: 32768 boxes make a 128 MiB mask (1024 words per row).
MAX_BOXES = 1 << 15
# Mask rows loaded ahead of the box being decided.
PREFETCH = 8


def greedy_bitmask(
    rows: jax.Array,
    labels: jax.Array | None,
    threshold: jax.Array,
    max_output: int,
    *,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Greedy NMS over score-sorted boxes with a suppression bitmask and a scan kernel.

    Args:
      rows: ``[N, 5]`` sorted boxes ``(x1, y1, x2, y2, area)``, ``N <= MAX_BOXES``.
      labels: ``[N]`` categories (boxes of different categories never overlap), or None.
      threshold: scalar IoU threshold.
      max_output: number of positions to return.
      interpret: run the scan in the Pallas interpreter (any device; for tests).

    Returns:
      ``(positions [max_output] int32, count)``: sorted positions of the kept boxes, in
      order, valid in the first ``count`` entries.
    """
    n = rows.shape[0]
    words = -(-n // 32)
    n_pad = words * 32
    width = max(pl.next_power_of_2(words), 16)  # Triton block shapes are powers of two
    cols = jnp.pad(rows, ((0, n_pad - n), (0, 0)))
    col_labels = None if labels is None else jnp.pad(labels, (0, n_pad - n))
    later = jnp.arange(n)[:, None] < jnp.arange(n_pad)[None, :]
    hit = nms_overlaps(rows, cols, threshold, labels, col_labels) & later
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(32, dtype=jnp.uint32))
    mask = jnp.sum(
        jnp.where(hit.reshape(n, words, 32), weights, jnp.uint32(0)), axis=-1, dtype=jnp.uint32
    )
    mask = jnp.pad(mask, ((0, n_pad - n), (0, width - words)))
    # Padding boxes start removed: they are never kept and their rows are zero.
    position = jnp.arange(width * 32).reshape(width, 32)
    removed = jnp.sum(jnp.where(position >= n, weights, jnp.uint32(0)), axis=-1, dtype=jnp.uint32)

    kwargs = {}
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        kwargs["compiler_params"] = plgpu.CompilerParams(num_warps=4, num_stages=3)
    removed = pl.pallas_call(
        _scan_kernel,
        out_shape=output_like(mask, (width,), jnp.uint32),
        interpret=interpret,
        name="jaxvision_nms_scan",
        **kwargs,
    )(mask, removed)
    bit = (removed[jnp.arange(n) // 32] >> (jnp.arange(n) % 32).astype(jnp.uint32)) & 1
    keep = bit == 0
    count = jnp.minimum(jnp.sum(keep, dtype=jnp.int32), max_output)
    (positions,) = jnp.nonzero(keep, size=max_output, fill_value=0)
    return positions.astype(jnp.int32), count


def _scan_kernel(mask_ref, removed_ref, out_ref):
    n_pad, width = mask_ref.shape
    iota = lax.broadcasted_iota(jnp.int32, (width,), 0)
    one = jnp.uint32(1)
    depth = min(PREFETCH, n_pad)

    def load(i: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Row ``i`` of the mask and its word ``i // 32`` (clamped past the end)."""
        i = jnp.minimum(i, n_pad - 1)
        row = mask_ref[pl.ds(i, 1), :].reshape(width)
        word = mask_ref[pl.ds(i, 1), pl.ds(i // 32, 1)].reshape(())
        return row, word

    def word_of(vec: jax.Array, w: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(iota == w, vec, jnp.uint32(0)), dtype=jnp.uint32)

    # The rows of the next `depth` boxes are in flight at every step (a software pipeline):
    # a step's own work is a few instructions, so it would otherwise wait on its load.
    def per_word(w, carry):
        removed, ahead = carry

        def per_box(b, carry):
            removed, current, ahead = carry
            (row, row_word), ahead = ahead[0], ahead[1:]
            ahead = (*ahead, load(w * 32 + b + depth))
            kept = ((current >> b.astype(jnp.uint32)) & one) == 0
            removed = jnp.where(kept, removed | row, removed)
            current = jnp.where(kept, current | row_word, current)
            return removed, current, ahead

        removed, _, ahead = lax.fori_loop(0, 32, per_box, (removed, word_of(removed, w), ahead))
        return removed, ahead

    ahead = tuple(load(jnp.int32(k)) for k in range(depth))
    removed, _ = lax.fori_loop(0, n_pad // 32, per_word, (removed_ref[...], ahead))
    out_ref[...] = removed
