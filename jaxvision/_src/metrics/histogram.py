"""Exact integer histograms of bin indices, the counting kernel of the confusion matrix.

XLA has no histogram primitive; a scatter-add is the O(P) way to count, and its cost is
per update. Two tricks cut that cost without giving up exactness:

- pair packing: two pixels' bins ``a, b`` (in ``[0, M)``) become one bin ``a * M + b`` of
  an ``M^2`` histogram ``H``, whose row sums plus column sums give back the ``M``-bin
  histogram. Half the updates, and on GPUs the updates spread over ``M^2`` addresses
  instead of ``M``, which cuts atomic contention. Used while ``M^2`` stays small.
- on CPU, the pixels are split into independent pieces whose scatters run on different
  cores (XLA's CPU runtime executes independent operations concurrently).

Every partial count is int32 over fewer than ``2**31`` pixels, so all counts are exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Pair packing while the M^2 histogram is at most 2^18 int32 (1 MiB): C <= 22 classes.
_MAX_PAIR_BINS = 1 << 18
# Below this many pixels, one plain scatter is as fast as anything else.
_MIN_SPLIT = 1 << 16
_CPU_PIECES = 4


def _scatter_count(bins: jax.Array, length: int) -> jax.Array:
    return jnp.zeros(length, jnp.int32).at[bins].add(1, mode="drop")


def histogram(bins: jax.Array, length: int) -> jax.Array:
    """Counts of each value in ``[0, length)``; values outside are dropped.

    Args:
      bins: ``[P]`` int32 bin indices, ``P < 2**31``.
      length: number of bins (static).

    Returns:
      ``[length]`` int32 counts, exact.
    """
    # Dropped values all become the extra bin `length`: negative indices would otherwise
    # wrap around (NumPy indexing), and a packed pair must never alias a valid one.
    bins = jnp.where((bins >= 0) & (bins < length), bins, length)
    size = bins.shape[0]
    if size < _MIN_SPLIT:
        return _scatter_count(bins, length)
    pieces = _CPU_PIECES if jax.default_backend() == "cpu" else 1
    m = length + 1
    if m * m > _MAX_PAIR_BINS:
        main = size - size % pieces
        parts = bins[:main].reshape(pieces, -1)
        counts = sum(_scatter_count(parts[i], length) for i in range(pieces))
        return counts + _scatter_count(bins[main:], length)
    main = size - size % (2 * pieces)
    pairs = bins[:main].reshape(pieces, -1, 2)
    packed = pairs[..., 0] * m + pairs[..., 1]
    joint = sum(
        jnp.zeros(m * m, jnp.int32).at[packed[i]].add(1, mode="drop") for i in range(pieces)
    ).reshape(m, m)
    counts = (joint.sum(0) + joint.sum(1))[:length]
    return counts + _scatter_count(bins[main:], length)
