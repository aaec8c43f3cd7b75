"""Adaptive max / average pooling with PyTorch's bins, and spatial pyramid pooling.

The bins depend only on static shapes, so they are computed here in Python with PyTorch's
integer formula (aten ``AdaptivePooling.h``): output index ``a`` of ``b`` over an input of
size ``c`` pools the half-open range ``[floor(a c / b), ceil((a + 1) c / b))``. Bins overlap
when ``c % b != 0`` and repeat input cells when ``b > c`` (upsampling). A 2-D bin is the
product of a row range and a column range, so both pools are separable: the column axis is
pooled first, then the row axis.

References:
  He, Zhang, Ren, Sun, "Spatial Pyramid Pooling in Deep Convolutional Networks for Visual
  Recognition", ECCV 2014, arXiv:1406.4729.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvision._src.export import export

Bins = tuple[tuple[int, int], ...]
_BINNINGS = ("adaptive", "sppnet")
_MODES = ("max", "avg")
_MAX_SLICED_BINS = 16


def _check_binning(binning: str) -> None:
    if binning not in _BINNINGS:
        raise ValueError(f"binning must be one of {_BINNINGS}, got {binning!r}")


@export("ops.pool_bins")
def pool_bins(input_size: int, output_size: int, *, binning: str = "adaptive") -> Bins:
    """The half-open ``(start, end)`` input ranges pooled into each output cell along one axis.

    ``binning="adaptive"`` is PyTorch's adaptive pooling, in its integer form (the float
    form had a precision bug, pytorch #81409)::

        start = (a // b) * c + ((a % b) * c) // b      # floor(a c / b)
        end   = 1 + ((a + 1) * c - 1) // b             # ceil((a + 1) c / b)

    for output index ``a`` of ``b = output_size`` over ``c = input_size``: exactly ``b``
    bins, which overlap when ``b`` does not divide ``c`` and repeat cells when ``b > c``.

    ``binning="sppnet"`` is the window / stride formula of SPP-net (He et al., section 2.3):
    ``win = ceil(c / n)``, ``stride = floor(c / n)`` for pyramid level ``n = output_size``,
    a plain max-pool with ``floor((c - win) / stride) + 1`` bins. That count is not always
    ``n``: ``c = 10, n = 6`` gives 9 bins (the paper's own 180-px setting, conv5 10 x 10),
    ``c = 11, n = 4`` gives 5; and ``c = 14, n = 4`` gives 4 bins that leave the last row
    out. It needs ``c >= n``.

    Args:
      input_size: ``c``, the input length along the axis (positive).
      output_size: ``b``, the output length (``"adaptive"``) or the pyramid level
        (``"sppnet"``); positive.
      binning: ``"adaptive"`` (PyTorch, exactly ``output_size`` bins) or ``"sppnet"``.

    Returns:
      A tuple of ``(start, end)`` pairs of Python ints, one per output cell.

    Examples:
      >>> from jaxvision import ops
      >>> ops.pool_bins(13, 6)
      ((0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13))
      >>> ops.pool_bins(4, 6)
      ((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4))
      >>> len(ops.pool_bins(10, 6, binning="sppnet"))
      9
    """
    _check_binning(binning)
    c, b = int(input_size), int(output_size)
    if c <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if b <= 0:
        raise ValueError(f"output_size must be positive, got {output_size}")
    if binning == "adaptive":
        return tuple(
            ((a // b) * c + ((a % b) * c) // b, 1 + ((a + 1) * c - 1) // b) for a in range(b)
        )
    if c < b:
        raise ValueError(
            f"binning='sppnet' needs input_size >= output_size (stride floor(c / n) would be "
            f"0), got input_size={c}, output_size={b}"
        )
    win, stride = -(-c // b), c // b
    return tuple((i * stride, i * stride + win) for i in range((c - win) // stride + 1))


def _pool_axis(x: jax.Array, bins: Bins, axis: int, mode: str) -> jax.Array:
    """Pools ``x`` along ``axis`` over ``bins``; the pooled axis gets ``len(bins)`` cells."""
    size = x.shape[axis]
    starts = np.array([s for s, _ in bins])
    lengths = np.array([e - s for s, e in bins])
    k = int(lengths.max())
    tiled = bool((lengths == k).all() and (starts == k * np.arange(len(bins))).all())
    if tiled and k * len(bins) == size:
        # Bins tile the axis: a reshape, no gather (the divisible case, and the identity).
        windows = x.reshape(x.shape[:axis] + (len(bins), k) + x.shape[axis + 1 :])
    elif len(bins) <= _MAX_SLICED_BINS:
        # One static slice per bin: its gradient is a pad, where a gather's is a scatter.
        reduce = jnp.mean if mode == "avg" else _first_max
        parts = [reduce(jax.lax.slice_in_dim(x, s, e, axis=axis), axis=axis) for s, e in bins]
        return jnp.stack(parts, axis=axis)
    else:
        # Each bin padded to k cells by repeating its last cell, which changes neither its
        # max nor (with the weights below) its mean.
        index = np.minimum(starts[:, None] + np.arange(k), (starts + lengths - 1)[:, None])
        windows = jnp.take(x, index.reshape(-1), axis=axis)
        windows = windows.reshape(x.shape[:axis] + (len(bins), k) + x.shape[axis + 1 :])
    if mode == "avg":
        weights = (np.arange(k) < lengths[:, None]) / lengths[:, None]
        weights = weights.reshape((len(bins), k) + (1,) * (x.ndim - axis - 1))
        return jnp.sum(windows * weights.astype(x.dtype), axis=axis + 1)
    return _first_max(windows, axis=axis + 1)


def _first_max(x: jax.Array, axis: int) -> jax.Array:
    """The maximum along ``axis``, differentiated as the FIRST cell holding it.

    That is PyTorch's choice on ties (``jnp.max`` would split the gradient equally among
    tied cells). NaN wins, as in ``jnp.argmax`` and ``np.max`` (XLA's CPU max reduction
    skips NaN at most sizes). The cell is selected with a mask rather than
    ``take_along_axis``, whose gradient is a scatter (several times slower on the CPU).
    ``axis`` must be non-negative.
    """
    first = jnp.argmax(x, axis=axis, keepdims=True)
    cell = jnp.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return jnp.sum(jnp.where(cell == first, x, jnp.zeros((), x.dtype)), axis=axis)


def _pool2d(x: jax.Array, rows: Bins, cols: Bins, mode: str) -> jax.Array:
    # Columns first, then rows: for max, the first maximum of the first row holding the
    # bin's maximum is PyTorch's row-major first maximum, so ties resolve identically.
    return _pool_axis(_pool_axis(x, cols, 2, mode), rows, 1, mode)


def _check_input(x: jax.Array, name: str = "x") -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be [N, H, W, C] (rank 4), got shape {x.shape}")
    if 0 in x.shape[1:3]:
        raise ValueError(f"{name} must have a non-empty H and W, got shape {x.shape}")
    return x


def _output_pair(output_size: int | Sequence[int | None], h: int, w: int) -> tuple[int, int]:
    if isinstance(output_size, (int, np.integer)):
        pair: tuple = (output_size, output_size)
    else:
        pair = tuple(output_size)
    if len(pair) != 2:
        raise ValueError(f"output_size must be an int or a pair (oh, ow), got {output_size!r}")
    pair = (h if pair[0] is None else pair[0], w if pair[1] is None else pair[1])
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in pair):
        raise ValueError(f"output_size must be positive ints, got {output_size!r}")
    return int(pair[0]), int(pair[1])


def _adaptive(x: ArrayLike, output_size: int | Sequence[int | None], mode: str) -> jax.Array:
    x = _check_input(x)
    oh, ow = _output_pair(output_size, x.shape[1], x.shape[2])
    return _pool2d(x, pool_bins(x.shape[1], oh), pool_bins(x.shape[2], ow), mode)


@export("ops.adaptive_max_pool2d")
def adaptive_max_pool2d(x: ArrayLike, output_size: int | Sequence[int | None]) -> jax.Array:
    """Adaptive max pooling with PyTorch's bins, channels-last.

    Output cell ``(i, j)`` is the maximum of ``x`` over rows ``pool_bins(H, oh)[i]`` and
    columns ``pool_bins(W, ow)[j]``: the same values as ``torch.nn.functional.
    adaptive_max_pool2d`` for every size, including sizes that do not divide ``H`` / ``W``
    and outputs larger than the input.

    Gradient: each output cell sends its gradient to ONE input cell, the first maximum of
    its bin in row-major order, the choice of PyTorch's CPU kernel. (``jnp.max`` would
    split it equally among tied cells instead.) Overlapping bins that share a maximum add
    their gradients in that cell.

    Args:
      x: ``[N, H, W, C]``.
      output_size: ``oh`` for a square output, or ``(oh, ow)``; ``None`` in the pair keeps
        that input size (as PyTorch).

    Returns:
      ``[N, oh, ow, C]`` in the dtype of ``x``.

    References:
      He et al., arXiv:1406.4729 (SPP-net); PyTorch ``AdaptiveMaxPooling2d.cpp``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import ops
      >>> x = jnp.arange(25.0).reshape(1, 5, 5, 1)
      >>> ops.adaptive_max_pool2d(x, 3)[0, ..., 0]
      Array([[ 6.,  8.,  9.],
             [16., 18., 19.],
             [21., 23., 24.]], dtype=float32)
    """
    return _adaptive(x, output_size, "max")


@export("ops.adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: ArrayLike, output_size: int | Sequence[int | None]) -> jax.Array:
    """Adaptive average pooling with PyTorch's bins, channels-last.

    Output cell ``(i, j)`` is the mean of ``x`` over rows ``pool_bins(H, oh)[i]`` and
    columns ``pool_bins(W, ow)[j]``, as ``torch.nn.functional.adaptive_avg_pool2d``
    (including sizes that do not divide and upsampling). The mean is taken over columns,
    then rows, so float32 results may differ from PyTorch's single sum in the last bits.

    Args:
      x: ``[N, H, W, C]``.
      output_size: ``oh`` for a square output, or ``(oh, ow)``; ``None`` in the pair keeps
        that input size.

    Returns:
      ``[N, oh, ow, C]`` in the dtype of ``x``.

    References:
      He et al., arXiv:1406.4729 (SPP-net); PyTorch ``AdaptiveAveragePooling.cpp``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import ops
      >>> x = jnp.arange(25.0).reshape(1, 5, 5, 1)
      >>> ops.adaptive_avg_pool2d(x, 3)[0, ..., 0]
      Array([[ 3. ,  4.5,  6. ],
             [10.5, 12. , 13.5],
             [18. , 19.5, 21. ]], dtype=float32)
    """
    return _adaptive(x, output_size, "avg")


def _check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    levels = tuple(levels)
    if not levels:
        raise ValueError("levels must be a non-empty sequence of positive ints, got ()")
    if not all(isinstance(n, (int, np.integer)) and n > 0 for n in levels):
        raise ValueError(f"levels must be positive ints, got {levels!r}")
    return tuple(int(n) for n in levels)


@export("ops.spatial_pyramid_pool")
def spatial_pyramid_pool(
    x: ArrayLike,
    levels: Sequence[int] = (1, 2, 4),
    *,
    mode: str = "max",
    binning: str = "adaptive",
) -> jax.Array:
    """Spatial pyramid pooling: a fixed-length vector from a feature map of any size.

    Each level ``n`` pools ``x`` into an ``n x n`` grid; the grids are flattened row-major
    over ``(n, n, C)`` (channels fastest, the NHWC order) and concatenated in the order of
    ``levels``. With the default ``binning="adaptive"`` the output has
    ``sum(n * n) * C`` features for every input size, and equals a concatenation of
    PyTorch's ``adaptive_{max,avg}_pool2d(x, n)`` (after permuting to channels-last).

    ``binning="sppnet"`` uses the paper's window ``ceil(a / n)`` and stride ``floor(a / n)``
    (``pool_bins(..., binning="sppnet")``); its length then depends on the input size
    (a 10 x 10 map at level 6 gives 9 x 9 bins, not 6 x 6), which is why the default follows
    PyTorch's adaptive bins. The paper's pyramid for classification is ``(6, 3, 2, 1)``
    (50 bins), the one in its figure ``(4, 2, 1)`` (21 bins).

    Args:
      x: ``[N, H, W, C]``.
      levels: pyramid levels, each a positive int; non-empty.
      mode: ``"max"`` (SPP-net) or ``"avg"``.
      binning: ``"adaptive"`` (PyTorch's bins) or ``"sppnet"`` (the paper's formula).

    Returns:
      ``[N, sum(bins_h(n) * bins_w(n)) * C]`` (``[N, sum(n * n) * C]`` for ``"adaptive"``)
      in the dtype of ``x``.

    References:
      He, Zhang, Ren, Sun, "Spatial Pyramid Pooling in Deep Convolutional Networks for
      Visual Recognition", ECCV 2014, arXiv:1406.4729, section 2.3.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import ops
      >>> ops.spatial_pyramid_pool(jnp.ones((2, 13, 13, 8)), (4, 2, 1)).shape
      (2, 168)
      >>> ops.spatial_pyramid_pool(jnp.ones((1, 10, 10, 1)), (6,), binning="sppnet").shape
      (1, 81)
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    _check_binning(binning)
    levels = _check_levels(levels)
    x = _check_input(x)
    n, h, w, _ = x.shape
    outs = []
    for level in levels:
        rows = pool_bins(h, level, binning=binning)
        cols = pool_bins(w, level, binning=binning)
        outs.append(_pool2d(x, rows, cols, mode).reshape(n, -1))
    return jnp.concatenate(outs, axis=-1)
