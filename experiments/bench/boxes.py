"""jaxvision.boxes / jaxvision.losses against torchvision.ops, side by side.

Run (the peer needs torchvision, which is not a jaxvision dependency; without it the
jaxvision timings are printed alone)::

    PYTHONPATH=. python experiments/bench/boxes.py [--repeats 7]

Cases: pairwise IoU and GIoU 4096 x 4096, CIoU loss forward + backward on 1M pairs
(mean reduction, gradient with respect to the predictions), NMS on 20k boxes at IoU 0.5
(two layouts: sides 10-200 px, most boxes kept; sides 100-500 px, most suppressed).
Each time is the median of ``--repeats`` runs after a warm-up run (which includes jit
compilation), synchronised with ``block_until_ready`` / ``torch.cuda.synchronize``. Both
sides run on the GPU when there is one, else on the CPU. The ratio is peer time divided
by jaxvision time: above 1 means jaxvision is faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import boxes, losses

try:
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None


def median_ms(fn: Callable[[], object], sync: Callable[[object], None], repeats: int) -> float:
    sync(fn())  # warm-up: compilation, allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def random_boxes(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """``n`` xyxy float32 boxes, top-left corners in [0, 1000)^2, sides in [lo, hi)."""
    xy = rng.uniform(0, 1000, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(lo, hi, (n, 2))], 1).astype(np.float32)


def cases(rng: np.random.Generator) -> list[tuple[str, dict]]:
    """(name, numpy inputs) of every benchmark case."""
    return [
        (
            "pairwise IoU 4096x4096",
            dict(a=random_boxes(rng, 4096, 10, 200), b=random_boxes(rng, 4096, 10, 200)),
        ),
        (
            "pairwise GIoU 4096x4096",
            dict(a=random_boxes(rng, 4096, 10, 200), b=random_boxes(rng, 4096, 10, 200)),
        ),
        (
            "CIoU loss fwd+bwd 1M pairs",
            dict(a=random_boxes(rng, 1 << 20, 10, 200), b=random_boxes(rng, 1 << 20, 10, 200)),
        ),
        (
            "NMS 20k boxes, sides 10-200",
            dict(
                a=random_boxes(rng, 20_000, 10, 200), s=rng.uniform(size=20_000).astype(np.float32)
            ),
        ),
        (
            "NMS 20k boxes, sides 100-500",
            dict(
                a=random_boxes(rng, 20_000, 100, 500), s=rng.uniform(size=20_000).astype(np.float32)
            ),
        ),
    ]


def jax_fn(name: str, x: dict) -> Callable[[], object]:
    x = {k: jnp.asarray(v) for k, v in x.items()}
    if name.startswith("pairwise IoU"):
        f = jax.jit(boxes.box_iou)
        return lambda: f(x["a"], x["b"])
    if name.startswith("pairwise GIoU"):
        f = jax.jit(boxes.box_giou)
        return lambda: f(x["a"], x["b"])
    if name.startswith("CIoU"):
        f = jax.jit(jax.value_and_grad(lambda p, t: losses.ciou_loss(p, t, reduction="mean")))
        return lambda: f(x["a"], x["b"])
    f = jax.jit(boxes.nms)
    return lambda: f(x["a"], x["s"], 0.5)


def torch_fn(name: str, x: dict, device: str) -> Callable[[], object]:
    ops = torchvision.ops
    x = {k: torch.from_numpy(v).to(device) for k, v in x.items()}
    if name.startswith("pairwise IoU"):
        return lambda: ops.box_iou(x["a"], x["b"])
    if name.startswith("pairwise GIoU"):
        return lambda: ops.generalized_box_iou(x["a"], x["b"])
    if name.startswith("CIoU"):

        def step():
            pred = x["a"].detach().requires_grad_(True)
            loss = ops.complete_box_iou_loss(pred, x["b"], reduction="mean")
            loss.backward()
            return pred.grad

        return step
    return lambda: ops.nms(x["a"], x["s"], 0.5)


def check_agreement(name: str, jax_out: object, torch_out: object) -> str:
    """A short note that both sides computed the same thing."""
    if name.startswith("NMS"):
        indices, count = jax_out
        same = np.array_equal(np.asarray(indices)[: int(count)], torch_out.cpu().numpy())
        return f"kept {int(count)}, same as peer: {same}"
    if name.startswith("CIoU"):
        jax_out, torch_out = jax_out[1], torch_out
    diff = np.max(np.abs(np.asarray(jax_out) - torch_out.detach().cpu().numpy()))
    return f"max |diff| {diff:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    device = "cpu"
    if torch is not None and torch.cuda.is_available():
        device = "cuda"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; ", end="")
    if torch is None:
        print("torchvision is not installed: jaxvision timings only")
    else:
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__} on {device}")

    def jax_sync(out: object) -> None:
        jax.block_until_ready(out)

    def torch_sync(out: object) -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rng = np.random.default_rng(0)
    print(f"{'case':<30} {'jaxvision ms':>13} {'torchvision ms':>15} {'ratio':>7}  note")
    for name, x in cases(rng):
        jf = jax_fn(name, x)
        jms = median_ms(jf, jax_sync, args.repeats)
        if torch is None:
            print(f"{name:<30} {jms:>13.2f} {'-':>15} {'-':>7}")
            continue
        tf = torch_fn(name, x, device)
        tms = median_ms(tf, torch_sync, args.repeats)
        note = check_agreement(name, jf(), tf())
        print(f"{name:<30} {jms:>13.2f} {tms:>15.2f} {tms / jms:>6.1f}x  {note}")
        if jax.default_backend() == "gpu":
            gpu_reference_rows(name, x, jms, args.repeats, jax_sync)


def gpu_reference_rows(name: str, x: dict, jms: float, repeats: int, sync) -> None:
    """On a GPU: the floor of a 4096^2 output, and NMS's blocked loop without the kernel."""
    a, b = jnp.asarray(x["a"]), jnp.asarray(x.get("b", x["a"]))
    if name.startswith("pairwise IoU"):
        # One fused XLA kernel writing the same [4096, 4096] float32 output (one add each):
        # what any pairwise function pays for dispatch, launch and the 64 MB write.
        floor = jax.jit(lambda p, q: p[:, :1] + q[None, :, 0])
        ms = median_ms(lambda: floor(a, b), sync, repeats)
        print(f"{'  floor: one add, same output':<30} {ms:>13.2f} {'':>15} {'':>7}")
    if name.startswith("NMS"):
        s = jnp.asarray(x["s"])
        ms = median_ms(lambda: boxes.nms(a, s, 0.5, method="xla"), sync, repeats)
        print(f"{'  blocked loop (no kernel)':<30} {ms:>13.2f} {'':>15} {'':>7}  x{ms / jms:.1f}")


if __name__ == "__main__":
    main()
