"""Pose metrics and decoders against the code users run today, side by side in one run.

    python experiments/bench/pose.py [--images 1000] [--repeats 5]

1. ``metrics.keypoint_oks`` (one jit call over ``[images, 20, 17, 2]`` detections and
   ``[images, 20, 17, 3]`` ground truths) against pycocotools' ``COCOeval.computeOks``
   called per image over the same data (its inner loop, without the rest of evaluate()).
2. Decoding a ``64 x 17 x 64 x 48`` batch of heatmaps (jaxvision takes it channels-last,
   ``[64, 64, 48, 17]``; NumPy gets ``[64, 17, 64, 48]`` as mmpose has it): argmax plus
   the quarter offset (fully vectorised NumPy, the same on the channels-last maps
   jaxvision gets, and mmpose's per-keypoint refinement loop)
   and DARK (``cv2.GaussianBlur`` 11 x 11 per map, log,
   Taylor step, as mmpose's ``refine_keypoints_dark``; jaxvision blurs with sigma 2,
   cv2's sigma for an 11-tap kernel).

3. Other formulations of the argmax + quarter decode (the two previous library versions, flat
   argmax, masked iota / float-key reductions, NumPy's layout, ``lax.reduce`` over (value,
   index) pairs, column and block maxima in XLA's fastest layout), each checked equal to the
   library's output, and the pieces (the one pass over the maps alone, NumPy's argmax alone).

OKS: medians over ``--repeats`` after one warm-up call. Decoding: ``--repeats`` interleaved
rounds (5 calls of each side in turn, the median kept, then the median over the rounds), so
that the load of a shared machine hits both sides alike. The ratio is peer time / ours. The
decode pairs also report the first call of each round apart (cold: the other side's 13.4 MB
have just pushed the maps out of the caches) and the last (warm: the maps read again).
jaxvision decodes float32 maps on the CPU with its native kernel (``JAXVISION_NATIVE=0``
for the XLA path, which is timed among the formulations either way).
``--only oks`` / ``--only decode`` runs one part.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import keypoints as kps
from jaxvision import metrics


def median_time(f, repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def oks_case(images: int, rng: np.random.Generator):
    gt_xy = rng.uniform(0, 500, (images, 20, 17, 2))
    vis = rng.choice([0, 2], (images, 20, 17), p=[0.3, 0.7])
    gt = np.concatenate([gt_xy, vis[..., None]], -1)
    areas = rng.uniform(500, 20000, (images, 20))
    boxes = np.concatenate([gt_xy.min(2), gt_xy.max(2) - gt_xy.min(2)], -1)
    pred = gt_xy[:, rng.permutation(20)] + rng.normal(0, 10, gt_xy.shape)
    return pred, gt, areas, boxes


def pycocotools_oks(pred, gt, areas, boxes):
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(iouType="keypoints")
    ev.params.maxDets = [20]
    ev._gts, ev._dts = defaultdict(list), defaultdict(list)
    for i in range(len(pred)):
        for g, a, b in zip(gt[i], areas[i], boxes[i], strict=True):
            ev._gts[i, 1].append({"keypoints": g.reshape(-1), "area": a, "bbox": b})
        for j, p in enumerate(pred[i]):
            kp = np.concatenate([p, np.ones((17, 1))], -1).reshape(-1)
            ev._dts[i, 1].append({"keypoints": kp, "score": 1.0 - j / 100})
    return lambda: [ev.computeOks(i, 1) for i in range(len(pred))]


def numpy_argmax_quarter(h: np.ndarray) -> np.ndarray:
    """``h: [N, K, H, W]`` -> ``[N, K, 2]`` (x, y) in index space, vectorised NumPy."""
    n, k, hh, ww = h.shape
    flat = h.reshape(n, k, -1)
    idx = flat.argmax(-1)
    x, y = idx % ww, idx // ww
    xy = np.stack([x, y], -1).astype(np.float32)
    xi, yi = np.clip(x, 1, ww - 2), np.clip(y, 1, hh - 2)
    nn_, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = h[nn_, kk, y, xi + 1] - h[nn_, kk, y, xi - 1]
    dy = h[nn_, kk, yi + 1, x] - h[nn_, kk, yi - 1, x]
    xy[..., 0] += np.where((x > 0) & (x < ww - 1), 0.25 * np.sign(dx), 0)
    xy[..., 1] += np.where((y > 0) & (y < hh - 1), 0.25 * np.sign(dy), 0)
    return xy


def numpy_argmax_quarter_hwk(h: np.ndarray) -> np.ndarray:
    """The same decode on the library's channels-last ``h: [N, H, W, K]`` -> ``[N, K, 2]``
    (what a NumPy decoder of a channels-last model's maps does: argmax over axis 1)."""
    n, hh, ww, k = h.shape
    idx = h.reshape(n, hh * ww, k).argmax(1)
    x, y = idx % ww, idx // ww
    xy = np.stack([x, y], -1).astype(np.float32)
    xi, yi = np.clip(x, 1, ww - 2), np.clip(y, 1, hh - 2)
    nn_, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    dx = h[nn_, y, xi + 1, kk] - h[nn_, y, xi - 1, kk]
    dy = h[nn_, yi + 1, x, kk] - h[nn_, yi - 1, x, kk]
    xy[..., 0] += np.where((x > 0) & (x < ww - 1), 0.25 * np.sign(dx), 0)
    xy[..., 1] += np.where((y > 0) & (y < hh - 1), 0.25 * np.sign(dy), 0)
    return xy


def mmpose_argmax_quarter(h: np.ndarray) -> np.ndarray:
    """mmpose's ``get_heatmap_maximum`` (vectorised) + ``refine_keypoints`` (a Python loop
    over instances and keypoints), as users of mmpose run it."""
    n, k, hh, ww = h.shape
    idx = h.reshape(n, k, -1).argmax(-1)
    xy = np.stack([idx % ww, idx // ww], -1).astype(np.float32)
    for i in range(n):
        for j in range(k):
            x, y = xy[i, j].astype(int)
            if 0 < x < ww - 1:
                xy[i, j, 0] += 0.25 * np.sign(h[i, j, y, x + 1] - h[i, j, y, x - 1])
            if 0 < y < hh - 1:
                xy[i, j, 1] += 0.25 * np.sign(h[i, j, y + 1, x] - h[i, j, y - 1, x])
    return xy


def numpy_dark(h: np.ndarray) -> np.ndarray:
    """mmpose-style DARK: blur each map (cv2, 11 x 11), log, one Taylor step at the argmax."""
    import cv2

    n, k, hh, ww = h.shape
    xy = numpy_argmax_quarter(h) * 0  # argmax only
    flat = h.reshape(n, k, -1)
    idx = flat.argmax(-1)
    x, y = idx % ww, idx // ww
    b = np.empty_like(h)
    for i in range(n):
        for j in range(k):
            peak = h[i, j].max()
            b[i, j] = cv2.GaussianBlur(h[i, j], (11, 11), 0)
            b[i, j] *= peak / max(b[i, j].max(), 1e-12)
    lg = np.log(np.maximum(b, 1e-10))
    xi, yi = np.clip(x, 1, ww - 2), np.clip(y, 1, hh - 2)
    nn_, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")

    def at(ox, oy):
        return lg[nn_, kk, yi + oy, xi + ox]

    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    hyy = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok = (det > 1e-12) & (hxx < 0) & (x == xi) & (y == yi)
    safe = np.where(ok, det, 1.0)
    xy[..., 0] = x + np.where(ok, -(hyy * gx - hxy * gy) / safe, 0)
    xy[..., 1] = y + np.where(ok, -(hxx * gy - hxy * gx) / safe, 0)
    return xy


# ---------------------------------------------------------------- argmax formulations
# Other ways to write the argmax + quarter decode of ``[N, H, W, K]`` maps, timed beside the
# library's (the row holding the maximum, then the column in it; neighbours gathered at
# clipped indices). Each returns ``[N, K, 2]`` and must equal the library's output.


def _quarter_at(h, x, y):
    from jaxvision._src.keypoints.argmax import _quarter

    return jnp.stack([x, y], -1).astype(h.dtype) + 0.5 + _quarter(h, x, y)


def _argmax_rows_then_column(h):
    """The second-session library's argmax: ``jnp.argmax`` of the row maxima, then in the row."""
    row_max = jnp.max(h, axis=-2)
    y = jnp.argmax(row_max, axis=-2)
    row = jnp.take_along_axis(h, y[..., None, None, :], axis=-3)[..., 0, :, :]
    return jnp.argmax(row, axis=-2), y


def _second_session_library(h):
    """That argmax, and the 3 x 3 window cut from 3 gathered rows at clipped indices."""
    x, y = _argmax_rows_then_column(h)
    hh, ww = h.shape[1:3]
    off = jnp.arange(-1, 2)[:, None]
    ys, xs = y[..., None, :] + off, x[..., None, :] + off
    rows = jnp.take_along_axis(h, jnp.clip(ys, 0, hh - 1)[..., :, None, :], axis=-3)
    p = jnp.take_along_axis(rows, jnp.clip(xs, 0, ww - 1)[..., None, :, :], axis=-2)
    dx = jnp.where((x > 0) & (x < ww - 1), p[..., 1, 2, :] - p[..., 1, 0, :], 0.0)
    dy = jnp.where((y > 0) & (y < hh - 1), p[..., 2, 1, :] - p[..., 0, 1, :], 0.0)
    xy = jnp.stack([x, y], -1).astype(h.dtype) + 0.5
    return xy + 0.25 * jnp.stack([jnp.sign(dx), jnp.sign(dy)], -1)


def _padded_patch_quarter(h):
    """The first session's: the 3 x 3 window gathered from a zero-padded copy."""
    x, y = _argmax_rows_then_column(h)
    hp = jnp.pad(h, [(0, 0), (1, 1), (1, 1), (0, 0)])
    off = jnp.arange(3)[:, None]
    rows = jnp.take_along_axis(hp, (y[..., None, :] + off)[..., :, None, :], axis=-3)
    p = jnp.take_along_axis(rows, (x[..., None, :] + off)[..., None, :, :], axis=-2)
    hh, ww = h.shape[1:3]
    dx = jnp.where((x > 0) & (x < ww - 1), p[..., 1, 2, :] - p[..., 1, 0, :], 0.0)
    dy = jnp.where((y > 0) & (y < hh - 1), p[..., 2, 1, :] - p[..., 0, 1, :], 0.0)
    xy = jnp.stack([x, y], -1).astype(h.dtype) + 0.5
    return xy + 0.25 * jnp.stack([jnp.sign(dx), jnp.sign(dy)], -1)


def _flat_iota_min(h):
    """One max, then the smallest flat index holding it (a masked iota min-reduction)."""
    n, hh, ww, k = h.shape
    f = h.reshape(n, hh * ww, k)
    m = jnp.max(f, axis=1, keepdims=True)
    idx = jnp.min(jnp.where(f == m, jax.lax.broadcasted_iota(jnp.int32, f.shape, 1), hh * ww), 1)
    return _quarter_at(h, idx % ww, idx // ww)


def _flat_argmax_hwk(h):
    """``jnp.argmax`` over the flattened ``H W`` axis, channels-last."""
    n, hh, ww, k = h.shape
    idx = jnp.argmax(h.reshape(n, hh * ww, k), axis=1)
    return _quarter_at(h, idx % ww, idx // ww)


def _transposed_argmax(h):
    """Transpose to ``[N * K, H * W]`` (NumPy's layout), then ``jnp.argmax``."""
    n, hh, ww, k = h.shape
    idx = jnp.argmax(jnp.moveaxis(h, -1, 1).reshape(n * k, hh * ww), -1).reshape(n, k)
    return _quarter_at(h, idx % ww, idx // ww)


def _pair_reduce(h):
    """``lax.reduce`` over ``(value, flat index)`` pairs, first occurrence on ties."""
    n, hh, ww, k = h.shape
    io = jax.lax.broadcasted_iota(jnp.int32, h.shape, 1) * ww
    io = io + jax.lax.broadcasted_iota(jnp.int32, h.shape, 2)

    def pick(a, b):
        first = (a[0] > b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return jnp.where(first, a[0], b[0]), jnp.where(first, a[1], b[1])

    init = (jnp.array(-jnp.inf, h.dtype), jnp.array(hh * ww, jnp.int32))
    _, idx = jax.lax.reduce((h, io), init, pick, (1, 2))
    return _quarter_at(h, idx % ww, idx // ww)


def _first(mask, axis):
    n = mask.shape[axis]
    key = jnp.where(mask, n - jax.lax.broadcasted_iota(jnp.float32, mask.shape, axis), 0.0)
    return jnp.minimum(n - jnp.max(key, axis), n - 1).astype(jnp.int32)


def _column_max_first(h):
    """Column maxima over ``H`` on ``[N, H, W*K]`` (the layout XLA's CPU max reduces fastest),
    the first column holding the peak, that column gathered, the first row in it. Not
    NumPy's first maximum when two columns hold the peak (kept only to time it)."""
    n, hh, ww, k = h.shape
    cm = jax.lax.optimization_barrier(jnp.max(h.reshape(n, hh, ww * k), 1)).reshape(n, ww, k)
    m = jnp.max(cm, 1)
    x = _first(cm == m[:, None], 1)
    idx = (jnp.arange(hh)[None, :, None] * ww + x[:, None, :]) * k + jnp.arange(k)
    col = jnp.take_along_axis(h.reshape(n, -1), idx.reshape(n, -1), 1).reshape(n, hh, k)
    return _quarter_at(h, x, _first(col == m[:, None], 1))


def _block_max_checked(h, bs=16):
    """Maxima over blocks of ``bs`` rows, then the first column and block holding the peak and
    the first row in that block (small gathers); exact through a ``lax.cond`` that falls back
    to the library's argmax when two columns hold the peak or the found pixel is not it."""
    from jaxvision._src.keypoints.argmax import _flat_argmax

    n, hh, ww, k = h.shape
    nb, kk = hh // bs, jnp.arange(k)
    bm = jax.lax.optimization_barrier(jnp.max(h.reshape(n, nb, bs, ww * k), 2))
    cm = jax.lax.optimization_barrier(jnp.max(bm, 1)).reshape(n, ww, k)
    m = jnp.max(cm, 1)
    x = _first(cm == m[:, None], 1)
    unique = jnp.sum((cm == m[:, None]).astype(jnp.float32)) == n * k
    bidx = (jnp.arange(nb)[None, :, None] * ww + x[:, None, :]) * k + kk
    bcol = jnp.take_along_axis(bm.reshape(n, -1), bidx.reshape(n, -1), 1).reshape(n, nb, k)
    b = _first(bcol == m[:, None], 1)
    rows = b[:, None, :] * bs + jnp.arange(bs)[None, :, None]
    idx = (rows * ww + x[:, None, :]) * k + kk
    v = jnp.take_along_axis(h.reshape(n, -1), idx.reshape(n, -1), 1).reshape(n, bs, k)
    y = b * bs + _first(v == m[:, None], 1)
    found = jnp.take_along_axis(h.reshape(n, -1), (y * ww + x) * k + kk, 1)
    ok = unique & jnp.all(found == m)
    x, y = jax.lax.cond(ok, lambda h: (x, y), lambda h: _flat_argmax(h)[:2], h)
    return _quarter_at(h, x, y)


def _fused_float_key(h):
    """One max over ``(H, W)``, then one max over the float key ``where(h == max, HW - i, 0)``."""
    n, hh, ww, k = h.shape
    m = jnp.max(h, axis=(1, 2))
    fl = jax.lax.broadcasted_iota(jnp.float32, h.shape, 1) * ww
    fl = fl + jax.lax.broadcasted_iota(jnp.float32, h.shape, 2)
    key = jnp.max(jnp.where(h == m[:, None, None, :], hh * ww - fl, 0.0), axis=(1, 2))
    idx = jnp.clip(hh * ww - key, 0, hh * ww - 1).astype(jnp.int32)
    return _quarter_at(h, idx % ww, idx // ww)


def _row_max_alone(h):
    """Not a decoder: the row maxima alone, the one pass over the maps the library makes."""
    return jnp.max(h, axis=2)


def _column_max_alone(h):
    """Not a decoder: column maxima over ``[N, H, W*K]`` alone (XLA's fastest max here)."""
    n, hh, ww, k = h.shape
    return jnp.max(h.reshape(n, hh, ww * k), 1)


def _library_xla_path(h):
    """The library's XLA path (other devices, float64 maps, ``JAXVISION_NATIVE=0``)."""
    from jaxvision._src.keypoints.argmax import _xla_decode

    return _xla_decode(h, "quarter")[3]


def _library_argmax_alone(h):
    """Not a decoder: the library's integer argmax without the quarter offset."""
    from jaxvision._src.keypoints.argmax import _flat_argmax

    return _flat_argmax(h)[:2]


FORMULATIONS = (
    ("library on the CPU: the native kernel (C++ FFI, one pass)", None),
    (
        "library's XLA path: row maxima, float-key first row / column, 4 gathered neighbours",
        _library_xla_path,
    ),
    ("second session's library: jnp.argmax in two steps, 3 x 3 window", _second_session_library),
    ("first session's: the same with a zero-padded copy for the window", _padded_patch_quarter),
    ("max then masked iota min over [N, H*W, K]", _flat_iota_min),
    ("max then float-key max over [N, H, W, K]", _fused_float_key),
    ("jnp.argmax over [N, H*W, K]", _flat_argmax_hwk),
    ("transpose to [N*K, H*W], jnp.argmax", _transposed_argmax),
    ("lax.reduce of (value, index) pairs", _pair_reduce),
    ("column maxima on [N, H, W*K], column gathered (ties not exact)", _column_max_first),
    ("16-row block maxima, small gathers, cond fallback on ties", _block_max_checked),
)
# Pieces, timed but not checked (they are not decoders).
PIECES = (
    ("XLA path's argmax alone (no quarter offset)", _library_argmax_alone),
    ("row maxima alone (the library's one pass)", _row_max_alone),
    ("column maxima alone on [N, H, W*K]", _column_max_alone),
)


class Timing(NamedTuple):
    """Seconds per call: the median of the round medians, and of each round's first (cold:
    the other sides' calls have just been through the caches) and last (warm) call."""

    median: float
    cold: float
    warm: float


def interleaved_medians(fns: dict, rounds: int, calls: int = 5) -> dict[str, Timing]:
    """Timings of each callable: in each round, ``calls`` calls of each in turn, so that a
    change of the machine's load hits all of them alike (after one warm-up call each)."""
    per_round: dict[str, list[list[float]]] = {name: [] for name in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for name, f in fns.items():
            ts = []
            for _ in range(calls):
                t0 = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t0)
            per_round[name].append(ts)
    med = statistics.median
    return {
        name: Timing(med(map(med, r)), med(t[0] for t in r), med(t[-1] for t in r))
        for name, r in per_round.items()
    }


def bench_formulations(maps, maps_np, repeats: int) -> None:
    want = np.asarray(kps.heatmap_argmax(maps, refine="quarter")[0])
    flat_np = maps_np.reshape(*maps_np.shape[:2], -1)
    fns = {
        "NumPy": lambda: numpy_argmax_quarter(maps_np),
        "NumPy argmax alone": lambda: flat_np.argmax(-1),
    }
    for name, f in FORMULATIONS + PIECES:
        jf = jax.jit(f or (lambda h: kps.heatmap_argmax(h, refine="quarter")[0]))
        if (name, f) in FORMULATIONS:
            np.testing.assert_array_equal(np.asarray(jf(maps)), want)
        fns[name] = lambda jf=jf: jax.block_until_ready(jf(maps))
    t = {name: timing.median for name, timing in interleaved_medians(fns, repeats).items()}
    print(
        "argmax + quarter formulations, interleaved rounds (vectorised NumPy: "
        f"{t['NumPy'] * 1e3:.2f} ms; its argmax alone {t['NumPy argmax alone'] * 1e3:.2f} ms)"
    )
    for name, _ in FORMULATIONS + PIECES:
        print(f"  {name}: {t[name] * 1e3:.2f} ms, ratio NumPy / this {t['NumPy'] / t[name]:.2f}x")


def bench_oks(images: int, repeats: int) -> None:
    pred, gt, areas, boxes = oks_case(images, np.random.default_rng(0))
    args = [jnp.asarray(a, jnp.float32) for a in (pred, gt, areas, boxes)]
    f = jax.jit(lambda p, g, a, b: metrics.keypoint_oks(p, g, a, gt_boxes=b))
    ours = median_time(lambda: jax.block_until_ready(f(*args)), repeats)
    peer_fn = pycocotools_oks(pred, gt, areas, boxes)
    peer = median_time(peer_fn, max(1, repeats // 2))
    got = np.asarray(f(*args))
    want = np.stack(peer_fn())
    err = float(np.abs(got - want).max())
    print(
        f"keypoint_oks {images} images x 20 x 20: jaxvision {ours * 1e3:.2f} ms, "
        f"pycocotools computeOks {peer * 1e3:.1f} ms, ratio {peer / ours:.1f}x "
        f"(max |diff| {err:.1e})"
    )


def bench_decode(repeats: int) -> None:
    rng = np.random.default_rng(1)
    centres = rng.uniform(4, 44, (64, 17, 2))
    maps = kps.gaussian_heatmaps(jnp.asarray(centres, jnp.float32), None, (64, 48), unbiased=True)
    maps = maps + 0.01 * jnp.asarray(rng.uniform(size=maps.shape), jnp.float32)
    maps_np = np.ascontiguousarray(np.transpose(np.asarray(maps), (0, 3, 1, 2)))
    quarter = jax.jit(lambda h: kps.heatmap_argmax(h, refine="quarter"))
    dark = jax.jit(lambda h: kps.heatmap_argmax(h, refine="dark", blur_sigma=2.0))
    maps_hwk = np.asarray(maps)  # the library's layout, the same array jaxvision gets
    for name, ours_f, peer_f, peer_in in (
        ("argmax + quarter (vectorised NumPy)", quarter, numpy_argmax_quarter, maps_np),
        (
            "argmax + quarter (vectorised NumPy, same [N, H, W, K] maps)",
            quarter,
            numpy_argmax_quarter_hwk,
            maps_hwk,
        ),
        ("argmax + quarter (mmpose loop)", quarter, mmpose_argmax_quarter, maps_np),
        ("DARK", dark, numpy_dark, maps_np),
    ):
        t = interleaved_medians(
            {
                "ours": lambda f=ours_f: jax.block_until_ready(f(maps)),
                "peer": lambda f=peer_f, x=peer_in: f(x),
            },
            repeats,
        )
        (ours, ours_cold, ours_warm), (peer, peer_cold, peer_warm) = t["ours"], t["peer"]
        diff = np.abs(np.asarray(ours_f(maps)[0]) - 0.5 - peer_f(peer_in))
        print(
            f"decode 64x17x64x48 {name}: jaxvision {ours * 1e3:.2f} ms, NumPy "
            f"{peer * 1e3:.2f} ms, ratio {peer / ours:.1f}x; first call of a round (cold) "
            f"{ours_cold * 1e3:.2f} / {peer_cold * 1e3:.2f} ms, {peer_cold / ours_cold:.1f}x; "
            f"last (warm) {ours_warm * 1e3:.2f} / {peer_warm * 1e3:.2f} ms, "
            f"{peer_warm / ours_warm:.1f}x (median |diff| {np.median(diff):.1e} px)"
        )
    bench_formulations(maps, maps_np, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("oks", "decode"), default=None)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    if args.only != "decode":
        bench_oks(args.images, args.repeats)
    if args.only != "oks":
        bench_decode(args.repeats)


if __name__ == "__main__":
    main()
