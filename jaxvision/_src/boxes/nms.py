"""Greedy non-maximum suppression that runs under jit, with a fixed-size result.

Algorithm: boxes are sorted by score and processed in blocks of ``_BLOCK`` boxes. Each
block is first tested against the boxes kept so far (a compact buffer, visited in
chunks of ``_BLOCK``, so the work grows with the number kept rather than with N^2), then
resolved internally by iterating ``keep = alive & ~any_i(keep_i & overlaps_ij, i < j)``
to its fixed point: entry j only depends on entries before it, so the fixed point is
unique and equals the sequential greedy result, and it is reached after as many
iterations as the longest chain of suppressions inside the block (usually a handful).
The kept boxes of the block are then appended to the buffer. The loop stops early once
``max_output`` boxes are kept. This is the blocked scheme of TensorFlow's padded NMS,
with the quadratic block-against-block pass replaced by a pass over the kept buffer only.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks, nms_kernel, terms
from jaxvision._src.export import export

_BLOCK = 256
# Whether CUDA devices use the bitmask scan of :mod:`nms_kernel` (read at each call and
# passed to the compiled function as a static argument, so a change takes effect).
GPU_KERNEL = True


def _check_threshold(iou_threshold: object) -> Array:
    """The float32 threshold ``t32`` with ``iou > t32 <=> iou > t`` for float32 ``iou``.

    torchvision compares its float32 IoU with a C++ double threshold; rounding ``t``
    down to float32 (not to nearest) keeps that comparison exact in float32.
    """
    if isinstance(iou_threshold, bool) or isinstance(iou_threshold, (str, bytes)):
        raise TypeError(f"`iou_threshold` must be a real scalar, got {iou_threshold!r}")
    if isinstance(iou_threshold, numbers.Real):
        t = float(iou_threshold)
        t32 = np.float32(t)
        if float(t32) > t:
            t32 = np.nextafter(t32, np.float32(-np.inf))
        return jnp.float32(t32)
    t = jnp.asarray(iou_threshold)
    if t.ndim != 0 or not (
        jnp.issubdtype(t.dtype, jnp.floating) or jnp.issubdtype(t.dtype, jnp.integer)
    ):
        raise TypeError(
            f"`iou_threshold` must be a real scalar, got shape {t.shape} dtype {t.dtype}"
        )
    t32 = t.astype(jnp.float32)
    if jnp.issubdtype(t.dtype, jnp.floating) and jnp.finfo(t.dtype).bits > 32:
        t32 = jnp.where(t32.astype(t.dtype) > t, jnp.nextafter(t32, -jnp.inf), t32)
    return t32


def _check_max_output(max_output: object, n: int) -> int:
    if max_output is None:
        return n
    if isinstance(max_output, bool) or not isinstance(max_output, numbers.Integral):
        raise TypeError(f"`max_output` must be a Python int or None, got {max_output!r}")
    if max_output < 0:
        raise ValueError(f"`max_output` must be >= 0, got {max_output}")
    return int(max_output)


def _score_order(scores: Array) -> Array:
    """Indices sorting ``scores`` descending; ties by index, NaN last (below -inf)."""
    nan = jnp.isnan(scores)
    # Adding 0.0 turns -0.0 into 0.0 so that the two compare equal.
    key = jnp.where(nan, 0, -scores) + 0.0
    index = jnp.arange(scores.shape[0], dtype=jnp.int32)
    return jax.lax.sort((nan.astype(jnp.int32), key, index), num_keys=3)[2]


def _overlaps(a: Array, b: Array, threshold: Array, la: Array | None, lb: Array | None) -> Array:
    """``IoU(a_i, b_j) > threshold`` for rows ``a: [P, 5]`` and ``b: [Q, 5]`` -> ``[P, Q]``.

    A row is ``(x1, y1, x2, y2, area)``. The test is torchvision's CPU kernel's: the
    float32 IoU ``I / (A_a + A_b - I)`` against the threshold (rounded down to float32 by
    ``_check_threshold``, which makes the float32 comparison equal torchvision's against a
    double), so ties at IoU == threshold resolve as in torchvision. Two empty boxes give
    ``0 / 0``, and NaN coordinates NaN: both compare false (never suppress, never
    suppressed). With labels ``la: [P]``, ``lb: [Q]``, boxes of different labels never
    overlap.
    """
    a, b = a[:, None, :], b[None, :, :]
    iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0)
    ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0)
    inter = iw * ih
    hit = inter / (a[..., 4] + b[..., 4] - inter) > threshold
    if la is not None and lb is not None:
        hit &= la[:, None] == lb[None, :]
    return hit


def _greedy(
    rows: Array, labels: Array | None, threshold: Array, max_output: int
) -> tuple[Array, Array]:
    """Greedy NMS over score-sorted ``rows: [N, 5]`` (and ``labels: [N]``).

    Returns ``(positions, count)``: positions in the sorted order of the kept boxes, in
    order, valid in the first ``count`` entries of a buffer of at least ``max_output``.
    """
    n = rows.shape[0]
    block = min(_BLOCK, n)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    rows = jnp.pad(rows, ((0, pad), (0, 0)))
    valid = jnp.arange(n_blocks * block) < n
    if labels is not None:
        labels = jnp.pad(labels, (0, pad))
    cap = min(n_blocks * block, -(-max_output // block) * block) + block
    upper = jnp.arange(block)[:, None] < jnp.arange(block)[None, :]

    def take(x: Array | None, start: Array) -> Array | None:
        return None if x is None else jax.lax.dynamic_slice_in_dim(x, start, block)

    def suppress_by_kept(blk, blk_labels, kept, kept_labels, count):
        def body(state):
            c, hit = state
            start = c * block
            live = start + jnp.arange(block) < count
            over = _overlaps(
                take(kept, start), blk, threshold, take(kept_labels, start), blk_labels
            )
            return c + 1, hit | jnp.any(over & live[:, None], axis=0)

        n_chunks = (count + block - 1) // block
        _, hit = jax.lax.while_loop(
            lambda s: s[0] < n_chunks, body, (jnp.int32(0), jnp.zeros(block, bool))
        )
        return hit

    def resolve_block(alive, blk, blk_labels):
        over = _overlaps(blk, blk, threshold, blk_labels, blk_labels) & upper

        def body(state):
            keep, _ = state
            new = alive & ~jnp.any(over & keep[:, None], axis=0)
            return new, jnp.any(new != keep)

        keep, _ = jax.lax.while_loop(lambda s: s[1], body, (alive, jnp.bool_(True)))
        return keep

    def body(state):
        i, count, kept, kept_labels, kept_pos = state
        start = i * block
        blk, blk_labels, alive = take(rows, start), take(labels, start), take(valid, start)
        alive &= ~suppress_by_kept(blk, blk_labels, kept, kept_labels, count)
        keep = resolve_block(alive, blk, blk_labels)
        # int32 throughout: under x64, cumsum and arange would be int64.
        slot = jnp.where(keep, count + jnp.cumsum(keep, dtype=jnp.int32) - 1, cap)
        kept = kept.at[slot].set(blk, mode="drop")
        if labels is not None:
            kept_labels = kept_labels.at[slot].set(blk_labels, mode="drop")
        kept_pos = kept_pos.at[slot].set(start + jnp.arange(block, dtype=jnp.int32), mode="drop")
        return i + 1, count + jnp.sum(keep, dtype=jnp.int32), kept, kept_labels, kept_pos

    state = (
        jnp.int32(0),
        jnp.int32(0),
        jnp.zeros((cap, rows.shape[1]), rows.dtype),
        None if labels is None else jnp.zeros(cap, labels.dtype),
        jnp.zeros(cap, jnp.int32),
    )
    _, count, _, _, kept_pos = jax.lax.while_loop(
        lambda s: (s[0] < n_blocks) & (s[1] < max_output), body, state
    )
    return kept_pos, jnp.minimum(count, max_output)


def _nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    labels: ArrayLike | None,
    iou_threshold: ArrayLike,
    max_output: int | None,
    fmt: str,
) -> tuple[Array, Array]:
    fmt = checks.check_fmt(fmt)
    boxes = checks.as_boxes(boxes, "boxes")
    if boxes.ndim != 2:
        raise ValueError(f"`boxes` must have shape [N, 4], got shape {boxes.shape}")
    n = boxes.shape[0]
    scores = jnp.asarray(scores)
    if scores.shape != (n,):
        raise ValueError(f"`scores` must have shape [N] = ({n},), got shape {scores.shape}")
    if not (
        jnp.issubdtype(scores.dtype, jnp.floating) or jnp.issubdtype(scores.dtype, jnp.integer)
    ):
        raise TypeError(f"`scores` must hold real numbers, got dtype {scores.dtype}")
    if labels is not None:
        labels = jnp.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"`idxs` must have shape [N] = ({n},), got shape {labels.shape}")
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise TypeError(f"`idxs` must hold integers, got dtype {labels.dtype}")
    threshold = _check_threshold(iou_threshold)
    max_output = _check_max_output(max_output, n)
    if n == 0 or max_output == 0:
        return jnp.full(max_output, -1, jnp.int32), jnp.int32(0)
    return _nms_compiled(
        boxes, scores, labels, threshold, max_output=max_output, fmt=fmt, gpu_kernel=GPU_KERNEL
    )


@functools.partial(jax.jit, static_argnames=("max_output", "fmt", "gpu_kernel"))
def _nms_compiled(
    boxes: Array,
    scores: Array,
    labels: Array | None,
    threshold: Array,
    max_output: int,
    fmt: str,
    gpu_kernel: bool,
) -> tuple[Array, Array]:
    # One compiled computation, so that eager calls do not dispatch op by op.
    order = _score_order(scores.astype(checks.compute_dtype(scores)))
    sorted_boxes = boxes.astype(jnp.float32)[order]
    # A power of two: exact, so IoUs equal torchvision's wherever its areas do not overflow.
    c = terms.corners(sorted_boxes * terms.overflow_scale(sorted_boxes), fmt)
    rows = jnp.stack([c.x1, c.y1, c.x2, c.y2, c.area], axis=-1)
    sorted_labels = None if labels is None else labels[order]

    def blocked(rows: Array) -> tuple[Array, Array]:
        kept_pos, count = _greedy(rows, sorted_labels, threshold, max_output)
        if kept_pos.shape[0] < max_output:
            kept_pos = jnp.pad(kept_pos, (0, max_output - kept_pos.shape[0]))
        return kept_pos[:max_output], count

    def bitmask(rows: Array) -> tuple[Array, Array]:
        return nms_kernel.greedy_bitmask(rows, sorted_labels, threshold, max_output, _overlaps)

    if gpu_kernel and rows.shape[0] <= nms_kernel.MAX_BOXES:
        # On CUDA GPUs a bitmask and one scan kernel; elsewhere the blocked loop.
        kept_pos, count = jax.lax.platform_dependent(rows, cuda=bitmask, default=blocked)
    else:
        kept_pos, count = blocked(rows)
    indices = jnp.where(jnp.arange(max_output) < count, order[kept_pos], -1)
    return indices.astype(jnp.int32), count


@export("boxes.nms")
def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: ArrayLike,
    *,
    max_output: int | None = None,
    fmt: str = "xyxy",
) -> tuple[Array, Array]:
    """Greedy non-maximum suppression with a fixed-size result, usable under jit and vmap.

    Boxes are visited in decreasing score; a box is dropped when its IoU with an already
    kept box is strictly greater than ``iou_threshold`` (as ``torchvision.ops.nms``). The
    IoU is computed in float32 as torchvision's CPU kernel does and compared with the
    threshold as a double, so exact ties (integer boxes at IoU == 0.2, say) give
    torchvision's indices. Coordinates too large for float32 areas (about 1.8e19) are
    first scaled by a power of two, so their IoUs stay defined.
    Equal scores keep the lower index first; NaN scores rank below every number
    (including -inf). A box with NaN coordinates neither suppresses nor is suppressed.
    Two empty boxes have IoU 0. Reference: the greedy NMS of Felzenszwalb et al.,
    "Object Detection with Discriminatively Trained Part-Based Models", TPAMI 2010.

    On CUDA GPUs, for up to 32768 boxes, the selection is computed from a suppression
    bitmask of ``N x next_pow2(ceil(N / 32))`` uint32 words (82 MB for 20k boxes, per
    problem under ``vmap``) and one scan kernel; elsewhere by a blocked loop that needs no
    ``N^2`` memory. Both give the same result.

    Args:
      boxes: ``[N, 4]`` boxes in format ``fmt`` (computed in float32).
      scores: ``[N]`` scores.
      iou_threshold: scalar; may be a traced value.
      max_output: static size of the result, ``None`` (default) for ``N``. Suppression
        stops once ``max_output`` boxes are kept, which also saves time.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
      ``(indices, count)``: ``indices: [max_output]`` int32, the kept boxes' indices in
      decreasing score, padded with -1 after the first ``count`` entries; ``count``: int32
      scalar, the number kept (at most ``max_output``). ``indices[:count]`` equals
      torchvision's ``nms(...)[:max_output]`` when scores are distinct.

    Raises:
      ValueError: ``boxes`` is not ``[N, 4]``, ``scores`` is not ``[N]``, ``fmt`` is
        unknown, or ``max_output`` is negative.
      TypeError: ``iou_threshold`` is not a real scalar or ``max_output`` not an int.
    """
    return _nms(boxes, scores, None, iou_threshold, max_output, fmt)


@export("boxes.batched_nms")
def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    idxs: ArrayLike,
    iou_threshold: ArrayLike,
    *,
    max_output: int | None = None,
    fmt: str = "xyxy",
) -> tuple[Array, Array]:
    """Non-maximum suppression done independently per category, with a fixed-size result.

    The result is the union of :func:`nms` run on each category alone, in decreasing
    score. Boxes of different categories never suppress each other because their overlap
    is defined as zero, not through torchvision's trick of offsetting each category's
    coordinates by ``idx * (max_coordinate + 1)``, which is wrong for negative
    coordinates and loses precision in fp16.

    Args:
      boxes: ``[N, 4]`` boxes in format ``fmt``.
      scores: ``[N]`` scores.
      idxs: ``[N]`` integer category of each box.
      iou_threshold: scalar; may be a traced value.
      max_output: static size of the result, ``None`` (default) for ``N``.
      fmt: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.

    Returns:
      ``(indices [max_output] int32 padded with -1, count)`` as :func:`nms`.

    Raises:
      ValueError, TypeError: as :func:`nms`, and for ``idxs`` of the wrong shape or a
        non-integer dtype.
    """
    return _nms(boxes, scores, idxs, iou_threshold, max_output, fmt)
