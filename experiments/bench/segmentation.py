"""Confusion matrix of 16 x 512 x 1024 labels, 19 classes: jaxvision against its peers.

Run: python experiments/bench/segmentation.py [--repeats 7] [--no-torch]
One core only (numpy.bincount is single-threaded): taskset -c 0 python ...

Labels are uint8 (as segmentation masks are stored), 5% of the targets are the ignore
label 255. Every side computes the full 19 x 19 matrix as a user would write it (mask the
ignored pixels, build ``C * t + p`` in a wide integer type, count); the bincount peers are
also timed on a precomputed index ("bincount alone"). Times are medians after warm-up;
ratio = peer time / jaxvision time (above 1: jaxvision is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxvision import metrics

SHAPE = (16, 512, 1024)
C = 19
IGNORE = 255


def median_ms(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> float:
    """Median wall time of ``fn`` after one warm-up call; ``sync`` waits for a device."""
    jax.block_until_ready(fn())
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true", help="numpy peers only")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    target = rng.integers(0, C, size=SHAPE, dtype=np.uint8)
    target[rng.random(SHAPE) < 0.05] = IGNORE
    pred = rng.integers(0, C, size=SHAPE, dtype=np.uint8)

    t_dev, p_dev = jax.device_put(target), jax.device_put(pred)
    ours_fn = jax.jit(lambda t, p: metrics.confusion_from_labels(p, t, C, ignore_index=IGNORE))
    ours = np.asarray(ours_fn(t_dev, p_dev))[:, :C]

    def numpy_full() -> np.ndarray:
        keep = target != IGNORE
        index = C * target[keep].astype(np.int64) + pred[keep]
        return np.bincount(index, minlength=C * C).reshape(C, C)

    keep = target != IGNORE
    np_index = C * target[keep].astype(np.int64) + pred[keep]
    assert np.array_equal(numpy_full(), ours)

    ours_ms = median_ms(lambda: ours_fn(t_dev, p_dev), args.repeats)
    rows = [
        ("numpy.bincount, as a user writes it", median_ms(numpy_full, args.repeats)),
        (
            "numpy.bincount alone (index precomputed)",
            median_ms(lambda: np.bincount(np_index, minlength=C * C), args.repeats),
        ),
    ]
    try:
        import torch
    except ImportError:
        torch = None
    if args.no_torch:
        torch = None
    if torch is not None:
        # On a GPU machine the torch peers run on the GPU too.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        tt, pt = torch.from_numpy(target).to(device), torch.from_numpy(pred).to(device)

        def torch_full() -> object:
            keep = tt != IGNORE
            index = C * tt[keep].long() + pt[keep].long()
            return torch.bincount(index, minlength=C * C).reshape(C, C)

        assert np.array_equal(torch_full().cpu().numpy(), ours)
        t_index = torch.from_numpy(np_index).to(device)
        rows += [
            (
                f"torch.bincount, as a user writes it ({device})",
                median_ms(torch_full, args.repeats, sync),
            ),
            (
                f"torch.bincount alone, index precomputed ({device})",
                median_ms(lambda: torch.bincount(t_index, minlength=C * C), args.repeats, sync),
            ),
        ]
        try:
            from torchmetrics.classification import MulticlassJaccardIndex
        except ImportError:
            MulticlassJaccardIndex = None
        if MulticlassJaccardIndex is not None:
            for validate in (True, False):
                metric = MulticlassJaccardIndex(C, ignore_index=IGNORE, validate_args=validate)
                metric = metric.to(device)

                def update(metric=metric) -> None:
                    metric.update(pt, tt)

                ms = median_ms(update, args.repeats, sync)
                rows.append((f"torchmetrics JaccardIndex.update, validate_args={validate}", ms))
                assert np.array_equal(metric.confmat.cpu().numpy(), ours * (args.repeats + 1))
    print(
        f"confusion matrix {SHAPE} uint8, C={C}, ignore_index={IGNORE}; jax {jax.__version__} "
        f"on {jax.devices()[0].device_kind}; medians of {args.repeats}"
    )
    print(f"{'jaxvision.metrics.confusion_from_labels (jit)':56s} {ours_ms:9.3f} ms")
    for name, ms in rows:
        print(f"{name:56s} {ms:9.3f} ms   ratio {ms / ours_ms:6.2f}")


if __name__ == "__main__":
    main()
