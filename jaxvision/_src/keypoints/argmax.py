"""Argmax heatmap decoding with quarter-offset or DARK (Taylor) sub-pixel refinement."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.native import loader

REFINES = ("none", "quarter", "dark")


def _first_index(mask: Array, axis: int) -> Array:
    """Index of the first ``True`` of ``mask`` along ``axis`` (the axis length where none).

    A plain max over the key ``n - i`` (0 where ``mask`` is false), exact in float32 for
    ``n < 2**24``: XLA's CPU argmax, a variadic reduction, is 30-100x slower than a max.
    """
    n = mask.shape[axis]
    dtype = jnp.float32 if n < 2**24 else jnp.int32
    i = jax.lax.broadcasted_iota(dtype, mask.shape, axis % mask.ndim)
    key = jnp.max(jnp.where(mask, n - i, jnp.zeros((), dtype)), axis=axis)
    return (n - key).astype(jnp.int32)


def _flat_argmax(h: Array) -> tuple[Array, Array, Array]:
    """Integer ``(x, y)`` of each channel's first maximum and the maximum, ``h: [..., H, W, K]``.

    Row-major first occurrence, as ``np.argmax`` on the flattened map (ties included): the
    first row whose maximum is the map's, then the first column of that row holding it. One
    pass over the maps (the row maxima, with a NaN flag per row in the same fusion); the rest
    works on ``[..., H, K]`` and one gathered row. The barrier keeps XLA from rewriting the
    maximum of the row maxima into a second, slower reduction over the whole maps. A map
    holding NaN gets peak NaN and its last pixel, as the native kernel: the flag is explicit
    because XLA's CPU max reduction does not always propagate NaN (a 2 x 50 x 48 x 17 batch
    with one NaN in row 45 got a finite row maximum there).
    """
    height, width = h.shape[-3:-1]
    row_max, row_nan = jax.lax.optimization_barrier(
        (jnp.max(h, axis=-2), jnp.any(jnp.isnan(h), axis=-2))
    )  # [..., H, K] each
    nan_map = jnp.any(row_nan, axis=-2)  # [..., K]
    peak = jnp.max(row_max, axis=-2)  # [..., K]
    y = jnp.minimum(_first_index(row_max == peak[..., None, :], -2), height - 1)
    row = jnp.take_along_axis(h, y[..., None, None, :], axis=-3)[..., 0, :, :]  # [..., W, K]
    x = jnp.minimum(_first_index(row == peak[..., None, :], -2), width - 1)
    x = jnp.where(nan_map, width - 1, x)
    y = jnp.where(nan_map, height - 1, y)
    return x, y, jnp.where(nan_map, jnp.asarray(jnp.nan, peak.dtype), peak)


def _at(h: Array, x: Array, y: Array) -> Array:
    """``h[..., y_i, x_i, k]`` for in-range ``x, y: [..., P, K]`` -> ``[..., P, K]``."""
    height, width, k = h.shape[-3:]
    flat = h.reshape(*h.shape[:-3], height * width * k)
    idx = (y * width + x) * k + jnp.arange(k)
    got = jnp.take_along_axis(flat, idx.reshape(*idx.shape[:-2], -1), axis=-1, mode="clip")
    return got.reshape(idx.shape)


def _patch(h: Array, x: Array, y: Array, r: int) -> Array:
    """The ``[..., 2r+1, 2r+1, K]`` window of ``h`` centred on ``(x, y)``, zeros outside.

    Gathers the ``2r + 1`` rows, then the columns within them, at clipped indices and
    zeroes what falls outside: padding the whole map first would copy all of it (half the
    decode time of a 64 x 17 x 64 x 48 batch on CPU).
    """
    height, width = h.shape[-3:-1]
    off = jnp.arange(-r, r + 1)[:, None]
    ys, xs = y[..., None, :] + off, x[..., None, :] + off  # [..., P, K]
    rows = jnp.take_along_axis(h, jnp.clip(ys, 0, height - 1)[..., :, None, :], axis=-3)
    p = jnp.take_along_axis(rows, jnp.clip(xs, 0, width - 1)[..., None, :, :], axis=-2)
    inside = ((ys >= 0) & (ys < height))[..., :, None, :] & ((xs >= 0) & (xs < width))[
        ..., None, :, :
    ]
    return jnp.where(inside, p, jnp.zeros((), h.dtype))


def _blur_patch(p: Array, sigma: float, r: int) -> Array:
    """Valid separable Gaussian blur of ``[..., P, P, K]`` patches, radius ``r``."""
    t = jnp.arange(-r, r + 1, dtype=p.dtype)
    g = jnp.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    n = p.shape[-3] - 2 * r
    rows = sum(g[i] * p[..., i : i + n, :, :] for i in range(2 * r + 1))
    return sum(g[i] * rows[..., :, i : i + n, :] for i in range(2 * r + 1))


def _quarter(h: Array, x: Array, y: Array) -> Array:
    """``0.25 * sign`` of the central differences at ``(x, y)``, 0 on the border.

    Gathers the four neighbours alone (at clipped indices): cutting a 3 x 3 window out of
    3 gathered rows costs more than the whole argmax on CPU.
    """
    height, width = h.shape[-3:-1]
    xl, xr = jnp.maximum(x - 1, 0), jnp.minimum(x + 1, width - 1)
    yu, yd = jnp.maximum(y - 1, 0), jnp.minimum(y + 1, height - 1)
    xs = jnp.stack([xr, xl, x, x], axis=-2)
    ys = jnp.stack([y, y, yd, yu], axis=-2)
    v = _at(h, xs, ys)  # [..., 4, K]
    dx = jnp.where((x > 0) & (x < width - 1), v[..., 0, :] - v[..., 1, :], 0.0)
    dy = jnp.where((y > 0) & (y < height - 1), v[..., 2, :] - v[..., 3, :], 0.0)
    return 0.25 * jnp.stack([jnp.sign(dx), jnp.sign(dy)], axis=-1)


def _xla_decode(h: Array, refine: str) -> tuple[Array, Array, Array, Array]:
    """``(x, y, peak, keypoints)`` by XLA: the keypoints are the argmax pixel's centre, plus
    the quarter offset for ``refine="quarter"``."""
    x, y, peak = _flat_argmax(h)
    xy = jnp.stack([x, y], axis=-1).astype(h.dtype) + 0.5
    if refine == "quarter":
        xy = xy + _quarter(h, x, y)
    return x, y, peak, xy


def _native_decode(h: Array, target: str, refine: str) -> tuple[Array, Array, Array, Array]:
    """The same four by the C++ kernel ``native/heatmap_argmax.cc`` (CPU, float32).

    One pass over each map; the XLA CPU path, bound by its reduction kernels, is 1.5-2x
    slower than NumPy's argmax on the same data (BENCHMARKS.md, "Pose: OKS and heatmap
    decoding"). The kernel returns the keypoints themselves: a jitted decode with no XLA op
    after the call runs on the calling thread, where one small op after it would send the
    whole call to another thread (about 0.3 ms on a 2-core VM, as much as the decode).
    """
    out = h.shape[:-3] + h.shape[-1:]
    types = (jnp.int32, jnp.int32, jnp.float32, jnp.float32)
    shapes = (out, out, out, (*out, 2))
    results = tuple(map(jax.ShapeDtypeStruct, shapes, types))
    return loader.call_kernel(target, results, h, quarter=refine == "quarter")


def _decode(h: Array, refine: str) -> tuple[Array, Array, Array, Array]:
    """The native kernel where the computation lowers for the CPU, XLA elsewhere."""
    target = None
    if h.dtype == jnp.float32 and h.size and h.shape[-3] * h.shape[-2] < 2**31:
        target = loader.cpu_target("heatmap_argmax")
    if target is None:
        return _xla_decode(h, refine)
    return jax.lax.platform_dependent(
        h,
        cpu=lambda m: _native_decode(m, target, refine),
        default=lambda m: _xla_decode(m, refine),
    )


def _dark(h: Array, x: Array, y: Array, blur_sigma: float | None) -> Array:
    """Newton step ``-H^-1 g`` on the log map at the argmax (DARK's Taylor expansion)."""
    height, width = h.shape[-3:-1]
    if blur_sigma:
        # Only the 3 x 3 blurred values around the argmax are used: blur a window.
        r = max(1, math.ceil(3 * blur_sigma))
        p = _blur_patch(_patch(h, x, y, r + 1), blur_sigma, r)
    else:
        p = _patch(h, x, y, 1)
    # DARK rescales the blurred map to the original maximum; a constant factor does not
    # change the derivatives of the log, so it is left out.
    lp = jnp.log(jnp.maximum(p, 1e-10))

    def at(ox: int, oy: int) -> Array:
        return lp[..., 1 + oy, 1 + ox, :]

    gx = 0.5 * (at(1, 0) - at(-1, 0))
    gy = 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    hyy = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    inner = (x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)
    # A maximum has a negative-definite Hessian; anywhere else the step is not taken.
    ok = inner & (det > 1e-12) & (hxx < 0)
    ox = checks.safe_div(-(hyy * gx - hxy * gy), jnp.where(ok, det, 0.0))
    oy = checks.safe_div(-(hxx * gy - hxy * gx), jnp.where(ok, det, 0.0))
    # The step stays inside the argmax pixel's neighbours.
    return jnp.clip(jnp.stack([ox, oy], axis=-1), -1.0, 1.0)


@export("keypoints.heatmap_argmax")
def heatmap_argmax(
    heatmaps: ArrayLike,
    *,
    refine: str = "none",
    blur_sigma: float | None = None,
) -> tuple[Array, Array]:
    """Decodes each heatmap channel at its maximum, with optional sub-pixel refinement.

    Coordinates are continuous map pixels (pixel ``i`` covers ``[i, i + 1)``), so the
    argmax pixel decodes to its centre ``i + 0.5``; multiply by the stride for input pixels.

    - ``refine="none"``: the argmax pixel's centre (up to +-0.5 map px of error).
    - ``"quarter"``: plus 0.25 px towards the higher neighbour in x and in y (Newell et al.,
      Xiao et al.; mmpose ``refine_keypoints``), not applied on the border.
    - ``"dark"``: one Newton step ``-H^-1 grad`` on the log heatmap at the argmax, central
      differences of one pixel (DARK, Zhang et al. CVPR 2020). It recovers a Gaussian's
      mean exactly; on the border or where the Hessian is not negative definite the step
      is 0. ``blur_sigma``: first smooth the maps with a Gaussian of that sigma (DARK's
      distribution modulation, for network outputs; mmpose blurs with an 11 px kernel,
      sigma 2), zero padding. Only the window around the argmax is blurred, and DARK's
      rescale to the original maximum is a constant factor that leaves the step unchanged.

    Args:
      heatmaps: ``[..., H, W, K]``.
      refine: ``"none"`` | ``"quarter"`` | ``"dark"`` (static).
      blur_sigma: optional DARK blur in map pixels (only with ``refine="dark"``).

    Returns:
      ``(keypoints [..., K, 2] (x, y) in map pixels, scores [..., K])``; the score is the
      heatmap's maximum. Coordinates carry no gradient (argmax). The argmax is the first
      maximum in row-major order, as ``np.argmax`` on the flattened map; a map holding NaN
      gets score NaN and decodes to its last pixel.

    Where the computation lowers for the CPU, float32 maps are decoded by a C++ kernel
    (``jaxvision/_src/native/heatmap_argmax.cc``, an XLA FFI call: one pass over each map,
    compiled for the machine on first use and cached); it returns exactly what the XLA path
    of every other device returns. Without a C++ compiler, or with ``JAXVISION_NATIVE=0``,
    the CPU runs the XLA path (same results, slower).

    Examples:
      >>> import numpy as np
      >>> from jaxvision._src.keypoints.heatmaps import gaussian_heatmaps
      >>> h = gaussian_heatmaps(np.array([[5.3, 4.8]]), None, (8, 8), unbiased=True)
      >>> np.asarray(heatmap_argmax(h)[0])
      array([[5.5, 4.5]], dtype=float32)
      >>> np.asarray(heatmap_argmax(h, refine="quarter")[0])
      array([[5.25, 4.75]], dtype=float32)
      >>> np.round(np.asarray(heatmap_argmax(h, refine="dark")[0]), 4)
      array([[5.3, 4.8]], dtype=float32)
    """
    h = checks.as_heatmaps(heatmaps)
    refine = checks.check_choice(refine, REFINES, "refine")
    if blur_sigma is not None and (refine != "dark" or not blur_sigma > 0):
        raise ValueError(f"`blur_sigma` must be > 0 and needs refine='dark', got {blur_sigma!r}")
    h = jax.lax.stop_gradient(h)
    x, y, score, xy = _decode(h, refine)
    if refine == "dark":
        xy = xy + _dark(h, x, y, blur_sigma)
    return xy, score
