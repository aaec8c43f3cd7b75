"""Pose metrics and decoders against the code users run today, side by side in one run.

    python experiments/bench/pose.py [--images 1000] [--repeats 5]

1. ``metrics.keypoint_oks`` (one jit call over ``[images, 20, 17, 2]`` detections and
   ``[images, 20, 17, 3]`` ground truths) against pycocotools' ``COCOeval.computeOks``
   called per image over the same data (its inner loop, without the rest of evaluate()).
2. Decoding a ``64 x 17 x 64 x 48`` batch of heatmaps (jaxvision takes it channels-last,
   ``[64, 64, 48, 17]``; NumPy gets ``[64, 17, 64, 48]`` as mmpose has it): argmax plus
   the quarter offset (fully vectorised NumPy, and mmpose's per-keypoint refinement loop)
   and DARK (``cv2.GaussianBlur`` 11 x 11 per map, log,
   Taylor step, as mmpose's ``refine_keypoints_dark``; jaxvision blurs with sigma 2,
   cv2's sigma for an 11-tap kernel).

3. Other formulations of the argmax + quarter decode (flat argmax, a masked iota
   min-reduction, NumPy's layout, ``lax.reduce`` over (value, index) pairs, the previous
   padded window), each checked equal to the library's output.

Medians over ``--repeats`` after one warm-up call; the ratio is peer time / ours.
``--only oks`` / ``--only decode`` runs one part.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

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


def _padded_patch_quarter(h):
    """The previous library version: the 3 x 3 window gathered from a zero-padded copy."""
    from jaxvision._src.keypoints.argmax import _flat_argmax

    x, y, _ = _flat_argmax(h)
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


FORMULATIONS = (
    ("library: row max, column in that row, clipped gathers", None),
    ("previous: the same with a zero-padded copy for the window", _padded_patch_quarter),
    ("max then masked iota min over [N, H*W, K]", _flat_iota_min),
    ("jnp.argmax over [N, H*W, K]", _flat_argmax_hwk),
    ("transpose to [N*K, H*W], jnp.argmax", _transposed_argmax),
    ("lax.reduce of (value, index) pairs", _pair_reduce),
)


def bench_formulations(maps, maps_np, repeats: int) -> None:
    peer = median_time(lambda: numpy_argmax_quarter(maps_np), repeats)
    want = np.asarray(kps.heatmap_argmax(maps, refine="quarter")[0])
    print(f"argmax + quarter formulations (vectorised NumPy: {peer * 1e3:.2f} ms)")
    for name, f in FORMULATIONS:
        jf = jax.jit(f or (lambda h: kps.heatmap_argmax(h, refine="quarter")[0]))
        np.testing.assert_array_equal(np.asarray(jf(maps)), want)
        t = median_time(lambda jf=jf: jax.block_until_ready(jf(maps)), repeats)
        print(f"  {name}: {t * 1e3:.2f} ms, ratio NumPy / this {peer / t:.2f}x")


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
    for name, ours_f, peer_f in (
        ("argmax + quarter (vectorised NumPy)", quarter, numpy_argmax_quarter),
        ("argmax + quarter (mmpose loop)", quarter, mmpose_argmax_quarter),
        ("DARK", dark, numpy_dark),
    ):
        ours = median_time(lambda f=ours_f: jax.block_until_ready(f(maps)), repeats)
        peer = median_time(lambda f=peer_f: f(maps_np), repeats)
        diff = np.abs(np.asarray(ours_f(maps)[0]) - 0.5 - peer_f(maps_np))
        print(
            f"decode 64x17x64x48 {name}: jaxvision {ours * 1e3:.2f} ms, NumPy "
            f"{peer * 1e3:.2f} ms, ratio {peer / ours:.1f}x (median |diff| "
            f"{np.median(diff):.1e} px)"
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
