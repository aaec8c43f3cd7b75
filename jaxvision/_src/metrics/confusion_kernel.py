"""Confusion matrices as one Pallas (Triton) kernel: one-hot matrix products, no atomics.

A scatter-add histogram of ``t * (C + 1) + p`` sends every pixel to one of ``C (C + 1)``
counters; on a GPU that is one atomic update per pixel, and with few classes thousands of
threads contend for the same addresses. Here the counting is a matrix product instead: for
a chunk of ``K`` pixels, with ``T`` the ``[K, Cp]`` one-hot matrix of the target rows and
``Q`` the ``[K, Cp]`` one-hot matrix of the prediction columns, ``T^T Q`` is the chunk's
``[Cp, Cp]`` confusion matrix. Each program of the grid loops over its own range of chunks,
builds ``T^T`` and ``Q`` in registers straight from the labels (any integer dtype, read
once from memory), and accumulates the products on the tensor cores: int8 one-hots with an
int32 accumulator, exact for any count. Every program stores its partial matrix to its own
``[Cp, Cp]`` block of a ``[B, P, Cp, Cp]`` output, and XLA sums over ``P`` in int32.

The class axis is padded to ``Cp``, a power of two >= 16 (Triton block shapes and
tensor-core tiles) and >= ``C + 1``; a dropped pixel has an all-zero row in ``T``, so it
adds nothing. The convention is the one of :func:`confusion._bin_indices`: a target that
is ``ignore_index`` or outside ``[0, C)`` is dropped; a prediction outside ``[0, C)`` is
counted in column ``C``. Pixels past the end of the input are masked out of the loads.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jaxvision._src.varying import output_like, varying_axes

# Pixels per step of a program (a power of two >= 16, the smallest tensor-core tile).
CHUNK = 512
# About this many programs in all (a few per streaming multiprocessor of an H100).
PROGRAMS = 1024
# The padded class axis Cp of the one-hot matrices; more classes use the scatter path.
MAX_PADDED_CLASSES = 128
# A float accumulator is exact while one program counts fewer than 2**24 pixels per cell.
_MAX_PIXELS_PER_PROGRAM = 1 << 23
_NUM_WARPS = 4
_NUM_STAGES = 2


def padded_classes(num_classes: int) -> int:
    """``Cp``: the smallest power of two >= 16 that holds columns ``0 .. C``."""
    return max(16, pl.next_power_of_2(num_classes + 1))


def supports(num_classes: int) -> bool:
    """Whether the kernel handles ``num_classes`` (static): ``Cp <= MAX_PADDED_CLASSES``."""
    return padded_classes(num_classes) <= MAX_PADDED_CLASSES


def confusion_matrix_kernel(
    target: jax.Array,
    pred: jax.Array,
    num_classes: int,
    ignore_index: int | None,
    *,
    chunk: int = CHUNK,
    programs: int = PROGRAMS,
    dot_dtype: jnp.dtype = jnp.int8,
    interpret: bool = False,
) -> jax.Array:
    """Confusion matrix of each row of ``target`` against ``pred``, in one kernel launch.

    Args:
      target: ``[B, N]`` ground-truth labels, any integer dtype (read as int32, as
        :func:`confusion._bin_indices` does).
      pred: ``[B, N]`` predicted labels, any integer dtype.
      num_classes: ``C``, static, with :func:`supports` true.
      ignore_index: static target label to drop, or ``None``.
      chunk: pixels per loop step ``K``, a power of two >= 16.
      programs: about how many programs to launch in all.
      dot_dtype: the one-hot dtype: ``int8`` (int32 accumulator) or ``float16`` /
        ``bfloat16`` (float32 accumulator; each program then counts < 2**24 pixels).
      interpret: run in the Pallas interpreter (any device; for tests).

    Returns:
      ``[B, C, C + 1]`` int32: ``cm[b, i, j]`` counts the pixels of row ``b`` with target
      ``i`` and prediction ``j`` (``j = C``: prediction outside ``[0, C)``).
    """
    c = num_classes
    if not supports(c):
        raise ValueError(f"the kernel takes at most {MAX_PADDED_CLASSES - 1} classes, got {c}")
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"chunk must be a power of two >= 16, got {chunk}")
    if target.shape != pred.shape or target.ndim != 2:
        raise ValueError(f"target and pred must both be [B, N], got {target.shape}, {pred.shape}")
    b, n = target.shape
    if b == 0 or n == 0:
        return jnp.zeros((b, c, c + 1), jnp.int32)
    cp = padded_classes(c)
    n_chunks = -(-n // chunk)
    per_row = max(1, min(n_chunks, -(-programs // b)))
    steps = min(-(-n_chunks // per_row), max(1, _MAX_PIXELS_PER_PROGRAM // chunk))
    per_row = -(-n_chunks // steps)
    if ignore_index is not None and not 0 <= ignore_index < c:
        ignore_index = None  # out-of-range targets are dropped anyway
    kernel = functools.partial(
        _kernel,
        n=n,
        num_classes=c,
        ignore_index=ignore_index,
        chunk=chunk,
        steps=steps,
        dot_dtype=np.dtype(dot_dtype),
    )
    target, pred = _vary_alike(target, pred)
    kwargs = {}
    if not interpret:
        kwargs["compiler_params"] = plgpu.CompilerParams(
            num_warps=_NUM_WARPS, num_stages=_NUM_STAGES
        )
    partial = pl.pallas_call(
        kernel,
        out_shape=output_like(target, (b, per_row, cp, cp), jnp.int32),
        grid=(b, per_row),
        out_specs=pl.BlockSpec((None, None, cp, cp), lambda i, k: (i, k, 0, 0)),
        interpret=interpret,
        name="jaxvision_confusion_matrix",
        **kwargs,
    )(target, pred)
    return jnp.sum(partial, axis=1, dtype=jnp.int32)[:, :c, : c + 1]


def _vary_alike(target: jax.Array, pred: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Marks both inputs varying over the union of their axes, so the output's is right."""

    def widen(x: jax.Array, axes: frozenset) -> jax.Array:
        if not axes:
            return x
        names = tuple(sorted(axes))
        if hasattr(lax, "pcast"):
            return lax.pcast(x, names, to="varying")
        return lax.pvary(x, names)

    t_axes, p_axes = varying_axes(target), varying_axes(pred)
    return widen(target, p_axes - t_axes), widen(pred, t_axes - p_axes)


def _kernel(
    target_ref, pred_ref, out_ref, *, n, num_classes, ignore_index, chunk, steps, dot_dtype
):
    """One program: pixels ``[k * steps * K, (k + 1) * steps * K)`` of row ``i``."""
    c = num_classes
    cp = out_ref.shape[-1]
    row, k = pl.program_id(0), pl.program_id(1)
    lanes = lax.broadcasted_iota(jnp.int32, (chunk,), 0)
    classes = lax.broadcasted_iota(jnp.int32, (cp,), 0)
    first = k * jnp.int32(steps * chunk)
    integer = jnp.issubdtype(dot_dtype, jnp.integer)
    acc_dtype = jnp.int32 if integer else jnp.float32
    drop, miss = jnp.int32(-1), jnp.int32(c)

    def step(s, acc):
        start = first + s * jnp.int32(chunk)
        inside = start + lanes < n
        t = plgpu.load(target_ref.at[row, pl.ds(start, chunk)], mask=inside)
        p = plgpu.load(pred_ref.at[row, pl.ds(start, chunk)], mask=inside)
        t, p = t.astype(jnp.int32), p.astype(jnp.int32)
        keep = inside & (t >= 0) & (t < c)
        if ignore_index is not None:
            keep &= t != jnp.int32(ignore_index)
        t = jnp.where(keep, t, drop)  # matches no class: an all-zero one-hot row
        p = jnp.where((p >= 0) & (p < c), p, miss)
        one_hot_t = (classes[:, None] == t[None, :]).astype(dot_dtype)  # [Cp, K]
        one_hot_p = (p[:, None] == classes[None, :]).astype(dot_dtype)  # [K, Cp]
        return acc + plgpu.dot(one_hot_t, one_hot_p).astype(acc_dtype)

    acc = lax.fori_loop(jnp.int32(0), jnp.int32(steps), step, jnp.zeros((cp, cp), acc_dtype))
    out_ref[...] = acc.astype(jnp.int32)
