"""Pose training-step throughput (images/s): SimpleBaseline ``pose_resnet50`` at 256 x 192.

One jitted step on random crops and keypoints: forward in training mode (BatchNorm batch
statistics, kept), ``models.pose_loss`` of the head, gradients, AdamW (lr 1e-3). Images/s
= batch / median step time over ``iters`` steps after ``warmup`` (the first compiles).
No peer is run here (mmpose is not installed in this project); the number is for the
issue's "on a lent GPU, the pose_resnet50 train step in images/s".

    python experiments/bench/pose_step.py --preset gpu    # pose_resnet50, batch 64, 256 x 192
    python experiments/bench/pose_step.py                 # --preset cpu: the small preset at
                                                          # 64 x 48, a dry run of the script
    python experiments/bench/pose_step.py --preset gpu --batch 1 --iters 1   # resnet50, CPU

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
import optax
from flax import nnx

from jaxvision import models

PRESETS = {
    "cpu": {"model": "small", "batch": 4, "size": (64, 48), "warmup": 1, "iters": 3},
    "gpu": {"model": "resnet50", "batch": 64, "size": (256, 192), "warmup": 3, "iters": 20},
}


def make_step(head: str, preset: dict):
    if preset["model"] == "resnet50":
        model = models.pose_resnet50(head, rngs=nnx.Rngs(0))
    else:
        model = models.PoseModel(models.pose_small_config(head, preset["size"]), rngs=nnx.Rngs(0))
    cfg = model.config
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adamw(1e-3)

    @jax.jit
    def step(params, rest, opt_state, images, keypoints, weights):
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            out = m(images)
            flow = m.flow if head == "rle" else None
            value = models.pose_loss(out, keypoints, weights, cfg, flow_log_prob=flow)
            return value, nnx.split(m, nnx.Param, ...)[2]

        (value, rest), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return value, optax.apply_updates(params, updates), rest, opt_state

    return step, params, rest, opt.init(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="cpu")
    parser.add_argument("--head", default="heatmap", choices=("heatmap", "integral", "simcc"))
    parser.add_argument("--batch", type=int, default=None, help="override the preset's")
    parser.add_argument("--iters", type=int, default=None, help="override the preset's")
    args = parser.parse_args()
    p = dict(PRESETS[args.preset])
    p["batch"] = args.batch or p["batch"]
    p["iters"] = args.iters or p["iters"]
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.platform} ({device.device_kind})")
    rng = np.random.default_rng(0)
    b, (h, w) = p["batch"], p["size"]
    images = jax.device_put(rng.uniform(size=(b, h, w, 3)).astype(np.float32))
    keypoints = jax.device_put(rng.uniform(4, min(h, w) - 4, (b, 17, 2)).astype(np.float32))
    weights = jax.device_put((rng.uniform(size=(b, 17)) > 0.2).astype(np.float32))
    step, params, rest, opt_state = make_step(args.head, p)
    times = []
    for i in range(p["warmup"] + p["iters"]):
        t0 = time.perf_counter()
        value, params, rest, opt_state = step(params, rest, opt_state, images, keypoints, weights)
        value = float(value)  # waits for the step
        if i >= p["warmup"]:
            times.append(time.perf_counter() - t0)
    assert np.isfinite(value), value
    t = statistics.median(times)
    result = {
        "model": p["model"],
        "head": args.head,
        "batch": b,
        "input": [h, w],
        "platform": device.platform,
        "step_ms": round(t * 1e3, 2),
        "images_per_s": round(b / t, 1),
        "loss": value,
    }
    print(
        f"{p['model']} {args.head} batch {b} at {h}x{w}: {t * 1e3:.1f} ms/step, "
        f"{b / t:.1f} images/s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
