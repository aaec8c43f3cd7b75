"""A procedurally generated detection dataset: filled shapes on noisy backgrounds.

Every image holds 1..``max_objects`` shapes (square, circle, triangle) of random size,
colour and position on a noisy background of random colour. Shapes never overlap (their
boxes keep a one-pixel gap), so every box is the exact pixel extent of its shape and no
object is hidden. Generation is vectorised NumPy and deterministic for a seed; the train
and validation splits draw from independent streams of the same seed.
"""

from __future__ import annotations

import numpy as np

from jaxvision._src.data.datasets import DetectionDataset
from jaxvision._src.export import export

SHAPE_CLASSES: tuple[str, ...] = ("square", "circle", "triangle")
_SPLITS = {"train": 0, "val": 1}
_PLACEMENT_TRIES = 12
_CHUNK = 256  # images generated at once; bounds memory, fixed for determinism


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@export("data.shapes_dataset")
def shapes_dataset(
    num_images: int,
    *,
    split: str = "train",
    seed: int = 0,
    image_size: int = 64,
    max_objects: int = 3,
    min_size: int | None = None,
    max_size: int | None = None,
    noise: float = 12.0,
) -> DetectionDataset:
    """Generates the "shapes" detection dataset, deterministically for ``seed``.

    Args:
      num_images: number of images ``N``.
      split: ``"train"`` or ``"val"``; the two splits of one seed are independent draws.
      seed: the random seed.
      image_size: side ``S`` of the square images.
      max_objects: the most shapes per image ``T``; each image holds ``1..T`` of them.
      min_size: smallest shape side in pixels (default ``S // 6``, at least 4).
      max_size: largest shape side in pixels (default ``S // 2.5``).
      noise: standard deviation of the Gaussian background noise, in 0..255 units.

    Returns:
      A :class:`DetectionDataset` with images ``[N, S, S, 3]`` uint8 and targets padded to
      ``T``. Labels index ``SHAPE_CLASSES = ("square", "circle", "triangle")``. An object
      that finds no free place after a few tries is dropped, so a few images hold fewer
      shapes than drawn (never zero).
    """
    num_images = _check_positive_int("num_images", num_images)
    image_size = _check_positive_int("image_size", image_size)
    max_objects = _check_positive_int("max_objects", max_objects)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    min_size = max(4, image_size // 6) if min_size is None else min_size
    max_size = int(image_size / 2.5) if max_size is None else max_size
    min_size = _check_positive_int("min_size", min_size)
    max_size = _check_positive_int("max_size", max_size)
    if not min_size <= max_size <= image_size - 2:
        raise ValueError(
            f"need min_size <= max_size <= image_size - 2, got {min_size}, {max_size}, {image_size}"
        )
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")

    rng = np.random.default_rng([int(seed), _SPLITS[split]])
    chunks = [
        _generate(
            rng, min(_CHUNK, num_images - i), image_size, max_objects, min_size, max_size, noise
        )
        for i in range(0, num_images, _CHUNK)
    ]
    return DetectionDataset(
        *(np.concatenate(parts) for parts in zip(*chunks, strict=True)),
        class_names=SHAPE_CLASSES,
        image_ids=np.arange(1, num_images + 1, dtype=np.int64),
    )


def _generate(
    rng: np.random.Generator,
    n: int,
    s: int,
    t: int,
    min_size: int,
    max_size: int,
    noise: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One chunk of ``n`` images: (images, boxes, labels, mask)."""
    wanted = rng.integers(1, t + 1, size=n)

    background = rng.uniform(0, 255, size=(n, 1, 1, 3))
    canvas = (background + noise * rng.standard_normal((n, s, s, 3), np.float32)).astype(np.float32)
    boxes = np.zeros((n, t, 4), np.float32)
    labels = np.full((n, t), -1, np.int32)
    mask = np.zeros((n, t), bool)
    centres = np.arange(s, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(centres, centres, indexing="ij")

    for k in range(t):
        box, found = _free_square(rng, boxes[:, :k], mask[:, :k], s, min_size, max_size)
        active = (k < wanted) & found
        cls = rng.integers(0, len(SHAPE_CLASSES), size=n)
        colour = rng.uniform(0, 255, size=(n, 3))
        # Keep shapes visible: push the colour away from the background where too close.
        diff = colour - background[:, 0, 0]
        close = np.linalg.norm(diff, axis=-1) < 90.0
        colour = np.where(close[:, None], (background[:, 0, 0] + 128.0) % 256.0, colour)
        shape = _shape_masks(box, cls, xx, yy) & active[:, None, None]
        np.copyto(canvas, colour[:, None, None, :].astype(np.float32), where=shape[..., None])
        boxes[:, k], has = _pixel_extent(shape)
        labels[:, k] = np.where(has, cls, -1)
        mask[:, k] = has

    # Slots are filled in order but a failed placement leaves a hole: compact real objects
    # to the front so that padding is always at the end.
    order = np.argsort(~mask, axis=1, kind="stable")
    boxes = np.take_along_axis(boxes, order[..., None], 1)
    labels = np.take_along_axis(labels, order, 1)
    mask = np.take_along_axis(mask, order, 1)
    np.rint(canvas, out=canvas)
    images = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
    return images, boxes, labels, mask


def _free_square(
    rng: np.random.Generator,
    prev: np.ndarray,
    prev_mask: np.ndarray,
    s: int,
    min_size: int,
    max_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A square per image keeping a 1-pixel gap to the earlier boxes ``prev [n, k, 4]``:
    ``(box [n, 4] xyxy, found [n])``, the first of ``_PLACEMENT_TRIES`` random candidates."""
    n = prev.shape[0]
    # Candidate squares [n, tries]: side and top-left corner in whole pixels.
    side = rng.integers(min_size, max_size + 1, size=(n, _PLACEMENT_TRIES))
    x0 = np.floor(rng.uniform(0, 1, size=side.shape) * (s - side + 1)).astype(int)
    y0 = np.floor(rng.uniform(0, 1, size=side.shape) * (s - side + 1)).astype(int)
    cand = np.stack([x0, y0, x0 + side, y0 + side], -1).astype(np.float32)
    prev = prev[:, None]  # [n, 1, k, 4]
    c = cand[:, :, None]  # [n, tries, 1, 4]
    apart = (
        (c[..., 2] + 1 <= prev[..., 0])
        | (prev[..., 2] + 1 <= c[..., 0])
        | (c[..., 3] + 1 <= prev[..., 1])
        | (prev[..., 3] + 1 <= c[..., 1])
    )
    free = np.all(apart | ~prev_mask[:, None], axis=-1)  # [n, tries]
    return cand[np.arange(n), np.argmax(free, -1)], free.any(-1)


def _shape_masks(box: np.ndarray, cls: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """``[n, s, s]`` pixels of a square, circle or upward triangle (``cls`` 0, 1, 2) in
    each ``box [n, 4]``, tested at the pixel centres ``xx``, ``yy``."""
    x0, y0, x1, y1 = (box[:, i, None, None].astype(np.float32) for i in range(4))
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    inside_box = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    circle = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    # Upward triangle: apex at the top centre, base along the bottom edge.
    triangle = inside_box & (np.abs(xx - cx) <= (yy - y0) / 2.0)
    return np.where(
        cls[:, None, None] == 0, inside_box, np.where(cls[:, None, None] == 1, circle, triangle)
    )


def _pixel_extent(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``xyxy`` pixel extent of each drawn ``shape [n, s, s]`` (zeros where
    nothing was drawn) and whether anything was."""
    s = shape.shape[-1]
    rows, cols = shape.any(2), shape.any(1)
    has = rows.any(1)
    ext = np.stack(
        [
            np.argmax(cols, 1),
            np.argmax(rows, 1),
            s - np.argmax(cols[:, ::-1], 1),
            s - np.argmax(rows[:, ::-1], 1),
        ],
        -1,
    ).astype(np.float32)
    return np.where(has[:, None], ext, 0.0), has
