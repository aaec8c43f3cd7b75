"""Images/s of an augmentation-heavy pipeline: grain worker processes against threads.

    python experiments/bench/input_pipeline.py [--batches 12] [--batch-size 16]

The same ``data.Loader`` runs with 0, 1 and 2 worker processes (``worker_count``) and with
1 and 2 reader threads in this process (``thread_count``), on two augmentations of
synthetic 160x160 RGB images decoded from their index:

- ``numpy``: random resized crop to 128x128, flip, per-row brightness jitter, 5-tap blur,
  normalisation; mostly large NumPy operations, which release the GIL.
- ``python``: the same plus a per-row colour jitter made of many small NumPy calls
  (gamma, channel mixing, clipping), the kind of Python-level work that holds the GIL.

Threads share the GIL, so Python-level work does not run in parallel in them; processes
do. Times exclude start-up (the first batch, which also waits for the workers to import
their modules).
"""

import argparse
import time

import numpy as np

from jaxvision import data

SIZE, CROP = 160, 128


class SyntheticImages:
    """Record i: a deterministic 160x160x3 uint8 image and its label."""

    def __len__(self):
        return 100_000

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        image = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
        return {"image": image, "label": np.int32(i % 10)}


def augment(record, rng):
    image = record["image"].astype(np.float32) / 255.0
    # Random resized crop (nearest neighbour), as in torchvision's RandomResizedCrop.
    scale = rng.uniform(0.35, 1.0)
    h = w = int(SIZE * np.sqrt(scale))
    top, left = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
    rows = top + (np.arange(CROP) * h // CROP)
    cols = left + (np.arange(CROP) * w // CROP)
    image = image[rows][:, cols]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    # Per-row brightness jitter: Python-level work that holds the GIL.
    gains = rng.uniform(0.9, 1.1, size=CROP)
    for r in range(CROP):
        image[r] = image[r] * gains[r]
    # 5-tap separable blur.
    k = np.array([1, 4, 6, 4, 1], np.float32) / 16
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="edge")
    image = sum(k[j] * padded[j : j + CROP, 2:-2] for j in range(5))
    padded = np.pad(image, ((0, 0), (2, 2), (0, 0)), mode="edge")
    image = sum(k[j] * padded[:, j : j + CROP] for j in range(5))
    image = (image - 0.5) / 0.25
    return {"image": image.astype(np.float32), "label": record["label"]}


def augment_python(record, rng):
    out = augment(record, rng)
    image = out["image"]
    gamma = rng.uniform(0.8, 1.25, size=CROP)
    mix = np.eye(3, dtype=np.float32) + rng.uniform(-0.05, 0.05, size=(CROP, 3, 3)).astype(
        np.float32
    )
    for r in range(CROP):
        row = np.abs(image[r]) ** gamma[r] * np.sign(image[r])
        row = row @ mix[r]
        image[r] = np.clip(row, -3.0, 3.0)
    return out


def images_per_second(transform, batches, batch_size, **kwargs):
    loader = data.Loader(
        SyntheticImages(), global_batch_size=batch_size, transform=transform, seed=0, **kwargs
    )
    with loader:
        next(loader)  # start-up
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"images/s, median of {args.repeats} runs of {args.batches} batches of {args.batch_size}")
    for name, transform in (("numpy", augment), ("python", augment_python)):

        def median(transform=transform, **kwargs):
            runs = [
                images_per_second(transform, args.batches, args.batch_size, **kwargs)
                for _ in range(args.repeats)
            ]
            return float(np.median(runs))

        base = median()
        print(f"\naugmentation: {name}")
        print("| parallelism | processes (`worker_count`) | threads (`thread_count`) | ratio |")
        print("|---|---|---|---|")
        print(f"| 0 (in the main thread) | {base:.1f} | {base:.1f} | 1.00 |", flush=True)
        for k in (1, 2):
            procs = median(worker_count=k)
            threads = median(thread_count=k)
            print(f"| {k} | {procs:.1f} | {threads:.1f} | {procs / threads:.2f} |", flush=True)


if __name__ == "__main__":
    main()
