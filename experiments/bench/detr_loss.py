"""DETR set criterion speed: jaxvision's ``detr_loss`` against HF transformers' loss.

Run:  python experiments/bench/detr_loss.py [--repeats 10] [--batch 8]

One training-step criterion on DETR-sized outputs: ``--batch`` images x 100 queries x
92 classes (COCO's 91 ids + no-object), 6 decoder layers (the final one and 5 auxiliary,
each matched on its own), 1..19 targets per image padded to 20. Both sides compute the
loss AND its gradient with respect to the logits and boxes of every layer:

- HF: ``ForObjectDetectionLoss`` (scipy ``linear_sum_assignment`` per image and layer on
  the host, then torch) and ``loss.backward()``, torch on the CPU (``--torch-threads``,
  default 1: faster than 2 on the shared 2-core machine);
- jaxvision: ``jax.jit(jax.value_and_grad(detr_loss))`` with the exact on-device matcher.

Times are medians of ``--repeats`` calls after a warm-up (``block_until_ready``); the
jaxvision compile time is the first call's. Ratio = HF time / jaxvision time: above 1
means jaxvision is faster.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np
import torch
from transformers import DetrConfig
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

from jaxvision import models

QUERIES, CLASSES, LAYERS, SLOTS = 100, 91, 6, 20


def make_batch(rng: np.random.Generator, batch: int) -> tuple[dict, dict]:
    """Random DETR outputs ``[L, B, Q, ...]`` and padded targets."""
    logits = rng.normal(size=(LAYERS, batch, QUERIES, CLASSES + 1)).astype(np.float32)
    boxes = np.concatenate(
        [
            rng.uniform(0.1, 0.9, (LAYERS, batch, QUERIES, 2)),
            rng.uniform(0.02, 0.5, (LAYERS, batch, QUERIES, 2)),
        ],
        -1,
    ).astype(np.float32)
    counts = rng.integers(1, SLOTS, batch)
    mask = np.arange(SLOTS)[None] < counts[:, None]
    targets = {
        "labels": np.where(mask, rng.integers(0, CLASSES, (batch, SLOTS)), 0).astype(np.int32),
        "boxes": np.concatenate(
            [rng.uniform(0.1, 0.9, (batch, SLOTS, 2)), rng.uniform(0.02, 0.5, (batch, SLOTS, 2))],
            -1,
        ).astype(np.float32),
        "mask": mask,
    }
    return {"logits": logits, "boxes": boxes}, targets


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def hf_step(stacked: dict, targets: dict, config: DetrConfig) -> float:
    logits = torch.tensor(stacked["logits"], requires_grad=True)
    boxes = torch.tensor(stacked["boxes"], requires_grad=True)
    labels = [
        {"class_labels": torch.tensor(lab[m], dtype=torch.int64), "boxes": torch.tensor(bx[m])}
        for lab, bx, m in zip(targets["labels"], targets["boxes"], targets["mask"], strict=True)
    ]
    loss, _, _ = ForObjectDetectionLoss(
        logits[-1], labels, "cpu", boxes[-1], config, outputs_class=logits, outputs_coord=boxes
    )
    loss.backward()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 was the fastest for HF on the shared 2-core CPU)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    stacked, targets = make_batch(np.random.default_rng(0), args.batch)
    outputs = {
        "logits": stacked["logits"][-1],
        "boxes": stacked["boxes"][-1],
        "aux": tuple(
            {"logits": stacked["logits"][i], "boxes": stacked["boxes"][i]}
            for i in range(LAYERS - 1)
        ),
    }
    config = DetrConfig(
        num_labels=CLASSES,
        auxiliary_loss=True,
        decoder_layers=LAYERS,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    step = jax.jit(jax.value_and_grad(lambda o, t: models.detr_loss(o, t, num_classes=CLASSES)[0]))
    device_outputs, device_targets = jax.device_put((outputs, targets))

    start = time.perf_counter()
    jax_loss = float(jax.block_until_ready(step(device_outputs, device_targets))[0])
    compile_ms = 1e3 * (time.perf_counter() - start)
    hf_loss = hf_step(stacked, targets, config)

    jax_ms = median_ms(functools.partial(step, device_outputs, device_targets), args.repeats)
    hf_ms = median_ms(functools.partial(hf_step, stacked, targets, config), args.repeats)
    print(
        f"DETR criterion, loss + gradient: {args.batch} images x {QUERIES} queries x "
        f"{CLASSES + 1} classes x {LAYERS} layers, {int(targets['mask'].sum())} targets "
        f"(padded to {SLOTS}); jax {jax.__version__}, torch {torch.__version__} "
        f"({args.torch_threads} threads), {jax.devices()[0].platform}"
    )
    print(f"  loss: jaxvision {jax_loss:.6f}  HF {hf_loss:.6f}")
    print(f"  jaxvision compile (first call): {compile_ms:8.1f} ms")
    print(f"  {'HF transformers':<16} {hf_ms:8.2f} ms")
    print(f"  {'jaxvision':<16} {jax_ms:8.2f} ms   ratio HF / jaxvision = {hf_ms / jax_ms:.2f}")


if __name__ == "__main__":
    main()
