"""Quantisation error of keypoint codecs: encode the ground truth, decode it back, no learning.

    python experiments/pose_quantisation.py [--points 4000] [--input 256] [--seed 0]

Random keypoints in a 256 x 256 input (16 px from the border) are encoded on maps of
64 / 32 / 16 pixels (stride 4 / 8 / 16) and decoded with each decoder of
``jaxvision.keypoints``; the table gives the error in input pixels: the largest per-axis
error, the per-axis RMS and the mean Euclidean error. Heatmaps use sigma = 2 map pixels at
stride 4, scaled with the map (1 at stride 8, 0.5 at stride 16):

- argmax: plain targets (the mean on the pixel's centre), argmax decode. A stride-s map
  errs by up to s / 2 per axis, RMS s / sqrt(12) (1.155 px at stride 4).
- quarter / DARK: unbiased targets, argmax plus the quarter offset / the DARK Taylor step.
- soft-argmax: unbiased targets used as logits (beta 1): the map's uniform background
  pulls the estimate to the centre; "+ debias" removes that (ANCHORS section 4);
  "on log-Gaussian logits": the logits a perfect integral model would output.
- SimCC k: one-hot bins of 1 / k map pixels (at stride 1 this is SimCC on the input).

The last line is JSON with every number.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import keypoints as kps

STRIDES = (4, 8, 16)


def heatmap_decoders(kp_map: jax.Array, size: tuple[int, int], sigma: float) -> dict:
    """Decoded map coordinates per decoder, ``kp_map: [N, 1, 2]`` map pixels."""
    plain = kps.gaussian_heatmaps(kp_map, None, size, sigma=sigma)
    unbiased = kps.gaussian_heatmaps(kp_map, None, size, sigma=sigma, unbiased=True)
    log_gauss = jnp.log(jnp.maximum(unbiased, 1e-30))
    return {
        "argmax": kps.heatmap_argmax(plain)[0],
        "argmax + quarter": kps.heatmap_argmax(unbiased, refine="quarter")[0],
        "argmax + DARK": kps.heatmap_argmax(unbiased, refine="dark")[0],
        "soft-argmax": kps.soft_argmax(unbiased),
        "soft-argmax + debias": kps.soft_argmax(unbiased, debias=True),
        "soft-argmax on log-Gaussian logits": kps.soft_argmax(log_gauss),
    }


def simcc_decoders(kp_map: jax.Array, size: tuple[int, int]) -> dict:
    out = {}
    for k in (1, 2, 3):
        lx, ly = kps.simcc_encode(kp_map, None, size, split_ratio=float(k), label="onehot")
        out[f"SimCC k={k}"] = kps.simcc_decode(lx, ly, split_ratio=float(k))[0]
    return out


def errors(decoded: jax.Array, truth: np.ndarray, stride: int) -> dict:
    err = (np.asarray(decoded, np.float64) - truth) * stride
    return {
        "max_abs": float(np.abs(err).max()),
        "rms_axis": float(np.sqrt(np.mean(err**2))),
        "mean_px": float(np.linalg.norm(err, axis=-1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4000)
    parser.add_argument("--input", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pts = rng.uniform(16, args.input - 16, (args.points, 1, 2))
    results: dict[str, dict[int, dict]] = {}
    for stride in (1, *STRIDES):
        size = (args.input // stride, args.input // stride)
        kp_map = jnp.asarray(pts / stride, jnp.float32)
        decoded = simcc_decoders(kp_map, size)
        if stride > 1:
            decoded = heatmap_decoders(kp_map, size, 2.0 * 4 / stride) | decoded
        for name, xy in decoded.items():
            results.setdefault(name, {})[stride] = errors(xy, pts / stride, stride)
    head = " | ".join(f"stride {s} ({args.input // s} px)" for s in (1, *STRIDES))
    print(
        f"error in input px, max |e| per axis / RMS per axis / mean Euclidean ({args.points} "
        "random keypoints)"
    )
    print(f"| decoder | {head} |")
    print("|---|" + "---|" * (1 + len(STRIDES)))
    for name, per in results.items():
        cells = [
            f"{per[s]['max_abs']:.3f} / {per[s]['rms_axis']:.3f} / {per[s]['mean_px']:.3f}"
            if s in per
            else "-"
            for s in (1, *STRIDES)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps({n: {str(s): v for s, v in per.items()} for n, per in results.items()}))


if __name__ == "__main__":
    main()
