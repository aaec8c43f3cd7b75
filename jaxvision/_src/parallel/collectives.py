"""Ring and recursive halving-doubling collectives built from ``lax.ppermute``.

All-reduce is a reduce-scatter followed by an all-gather. In the ring versions
(Patarasuk & Yuan, "Bandwidth optimal all-reduce algorithms for clusters of
workstations", JPDC 2009; the algorithm behind NCCL's and Horovod's ring all-reduce)
each of the ``n`` devices sends ``(n - 1) / n`` of the array in each phase, ``2 (n - 1) / n``
in all, independent of ``n``: bandwidth-optimal, at the price of ``2 (n - 1)`` latency
steps. Recursive halving-doubling (Rabenseifner, "Optimization of collective reduction
operations", ICCS 2004; Thakur, Rabenseifner & Gropp, IJHPCA 2005) sends the same volume
in ``2 log2 n`` steps. These exist to teach and to measure; ``lax.psum`` lets XLA pick the
algorithm and is what the train step uses.

Every function is called inside ``jax.shard_map`` (or ``jax.pmap``) with the name of a
mesh axis, like ``lax.psum``. Sums are accumulated in the input dtype, so ``bfloat16``
results can differ from ``lax.psum`` by the rounding of a different summation order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision._src.export import export

_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64, jnp.int32, jnp.int64)


def _check(x: jax.Array, axis_name: str, name: str) -> None:
    if not isinstance(axis_name, str):
        raise TypeError(f"{name}: axis_name must be a string, got {axis_name!r}")
    if jnp.dtype(x.dtype) not in [jnp.dtype(d) for d in _DTYPES]:
        raise TypeError(f"{name}: x has dtype {x.dtype}; supported: float32, bfloat16, int32, ...")


def _ring(n: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % n) for i in range(n)]


def _take(chunks: jax.Array, index: jax.Array) -> jax.Array:
    return lax.dynamic_index_in_dim(chunks, index, axis=0, keepdims=False)


def _ring_reduce_scatter_chunks(chunks: jax.Array, axis_name: str) -> jax.Array:
    """chunks: [n, c, ...] on every device -> the device's fully reduced chunk [c, ...]."""
    n = chunks.shape[0]
    i = lax.axis_index(axis_name)
    if n == 1:
        return chunks[0]
    # At step s device i sends its partial sum of chunk (i - s - 1) mod n to device i + 1,
    # which adds its own copy of that chunk; after n - 1 steps device i holds chunk i.
    acc = _take(chunks, (i - 1) % n)
    for s in range(n - 1):
        received = lax.ppermute(acc, axis_name, _ring(n))
        acc = received + _take(chunks, (i - s - 2) % n)
    return acc


def _ring_all_gather_chunk(chunk: jax.Array, axis_name: str, n: int) -> jax.Array:
    """chunk: [c, ...], device i's -> [n, c, ...] with device j's chunk at index j."""
    i = lax.axis_index(axis_name)
    out = jnp.zeros((n, *chunk.shape), chunk.dtype)
    out = lax.dynamic_update_index_in_dim(out, chunk, i, axis=0)
    # At step s device i forwards the chunk of device (i - s) mod n it received last.
    piece = chunk
    for s in range(n - 1):
        piece = lax.ppermute(piece, axis_name, _ring(n))
        out = lax.dynamic_update_index_in_dim(out, piece, (i - s - 1) % n, axis=0)
    return out


def _pad_rows(x: jax.Array, n: int) -> jax.Array:
    rows = x.shape[0]
    padded = -(-rows // n) * n
    return jnp.pad(x, [(0, padded - rows)] + [(0, 0)] * (x.ndim - 1))


@export("parallel.ring_reduce_scatter")
def ring_reduce_scatter(x: jax.Array, axis_name: str) -> jax.Array:
    """Sums ``x`` over the devices of ``axis_name`` and keeps this device's block of rows.

    Equals ``lax.psum_scatter(x, axis_name, scatter_dimension=0, tiled=True)`` when ``M``
    is divisible by ``n``; otherwise ``x`` is zero-padded to ``n * ceil(M / n)`` rows first.

    Args:
      x: ``[M, ...]``, this device's addend.
      axis_name: the mesh axis of ``n`` devices to reduce over.

    Returns:
      ``[ceil(M / n), ...]``: block ``i`` of the sum on device ``i`` (padding rows are 0).
    """
    _check(x, axis_name, "ring_reduce_scatter")
    if x.ndim == 0:
        raise ValueError("ring_reduce_scatter: x needs a leading axis to scatter")
    n = lax.axis_size(axis_name)
    x = _pad_rows(x, n)
    return _ring_reduce_scatter_chunks(x.reshape(n, x.shape[0] // n, *x.shape[1:]), axis_name)


@export("parallel.ring_all_gather")
def ring_all_gather(x: jax.Array, axis_name: str) -> jax.Array:
    """Concatenates every device's ``x`` along axis 0, passing blocks around a ring.

    Equals ``lax.all_gather(x, axis_name, axis=0, tiled=True)``.

    Args:
      x: ``[C, ...]``, this device's block.
      axis_name: the mesh axis of ``n`` devices.

    Returns:
      ``[n * C, ...]``, device ``j``'s block at rows ``j * C: (j + 1) * C``, on every device.
    """
    _check(x, axis_name, "ring_all_gather")
    if x.ndim == 0:
        raise ValueError("ring_all_gather: x needs a leading axis to concatenate along")
    n = lax.axis_size(axis_name)
    out = _ring_all_gather_chunk(x, axis_name, n)
    return out.reshape(n * x.shape[0], *x.shape[1:])


def _flat_chunks(x: jax.Array, n: int) -> jax.Array:
    flat = x.reshape(-1)
    return jnp.pad(flat, (0, -flat.size % n)).reshape(n, -1)


@export("parallel.ring_all_reduce")
def ring_all_reduce(x: jax.Array, axis_name: str) -> jax.Array:
    """Sums ``x`` over ``axis_name`` as ring reduce-scatter then ring all-gather.

    Equals ``lax.psum(x, axis_name)``. Any shape: ``x`` is flattened and zero-padded to a
    multiple of ``n``; each device sends ``2 (n - 1) / n`` of the array in ``2 (n - 1)`` steps.

    Args:
      x: ``[...]``, this device's addend.
      axis_name: the mesh axis of ``n`` devices.

    Returns:
      ``[...]``: the sum over devices, on every device.
    """
    _check(x, axis_name, "ring_all_reduce")
    n = lax.axis_size(axis_name)
    mine = _ring_reduce_scatter_chunks(_flat_chunks(x, n), axis_name)
    full = _ring_all_gather_chunk(mine, axis_name, n).reshape(-1)
    return full[: x.size].reshape(x.shape)


@export("parallel.halving_doubling_all_reduce", deprecated=("parallel.tree_all_reduce",))
def halving_doubling_all_reduce(x: jax.Array, axis_name: str) -> jax.Array:
    """Sums ``x`` over ``axis_name`` by recursive halving (reduce-scatter) then doubling.

    Equals ``lax.psum(x, axis_name)``. With ``n = 2^k`` devices, round ``r`` pairs device
    ``i`` with ``i XOR 2^(k-1-r)``: each keeps half of its current segment, sends the other
    half and adds what it receives; after ``k`` rounds device ``i`` owns block ``i`` of the
    sum, and ``k`` doubling rounds in reverse order gather it everywhere: ``2 k`` steps,
    ``2 (n - 1) / n`` of the array sent. Other ``n``: the ``r = n - 2^k`` devices above
    ``2^k`` first add their data into devices ``0..r-1`` and get the result back at the end.

    Args:
      x: ``[...]``, this device's addend.
      axis_name: the mesh axis of ``n`` devices.

    Returns:
      ``[...]``: the sum over devices, on every device.
    """
    _check(x, axis_name, "halving_doubling_all_reduce")
    n = lax.axis_size(axis_name)
    i = lax.axis_index(axis_name)
    p = 1 << (n.bit_length() - 1)
    extra = n - p
    flat = x.reshape(-1)
    buf = jnp.pad(flat, (0, -flat.size % p))
    if extra:
        folded = lax.ppermute(buf, axis_name, [(p + j, j) for j in range(extra)])
        buf = buf + folded  # zeros where nothing was sent
    distances = [p >> (r + 1) for r in range(p.bit_length() - 1)]
    for d in distances:
        lower, upper = jnp.split(buf, 2)
        high = (i & d) != 0
        send = jnp.where(high, lower, upper)
        keep = jnp.where(high, upper, lower)
        pairs = [(j, j ^ d) for j in range(p)]
        buf = keep + lax.ppermute(send, axis_name, pairs)
    for d in reversed(distances):
        pairs = [(j, j ^ d) for j in range(p)]
        other = lax.ppermute(buf, axis_name, pairs)
        high = (i & d) != 0
        buf = jnp.where(high, jnp.concatenate([other, buf]), jnp.concatenate([buf, other]))
    if extra:
        back = lax.ppermute(buf, axis_name, [(j, p + j) for j in range(extra)])
        buf = jnp.where(i >= p, back, buf)
    return buf[: x.size].reshape(x.shape)
