"""COCO person-keypoints reading and top-down training crops (one crop per person)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

from jaxvision._src.data.keypoints_generated import KeypointDataset
from jaxvision._src.export import export
from jaxvision._src.keypoints.constants import COCO_FLIP_PAIRS
from jaxvision._src.keypoints.crop import crop_images, crop_matrix, keypoints_to_crop


@export("data.read_coco_keypoints")
def read_coco_keypoints(
    annotation_file: str | Path, image_dir: str | Path, *, min_keypoints: int = 1
) -> KeypointDataset:
    """Reads COCO person keypoints (``person_keypoints_*.json`` or an exported dataset).

    Crowd annotations and persons with fewer than ``min_keypoints`` labelled keypoints are
    left out (COCO's evaluation ignores ``num_keypoints == 0``). Images load with PIL as RGB.

    Args:
      annotation_file: the COCO JSON.
      image_dir: folder of the ``file_name`` of each image.
      min_keypoints: least number of labelled keypoints a person needs.

    Returns:
      A :class:`KeypointDataset` (``images`` a list, one array per image).
    """
    from PIL import Image

    coco = json.loads(Path(annotation_file).read_text())
    people: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) < min_keypoints:
            continue
        people.setdefault(a["image_id"], []).append(a)
    images, ids, owner, kps, boxes, areas = [], [], [], [], [], []
    for record in coco["images"]:
        if record["id"] not in people:
            continue
        image = Image.open(Path(image_dir) / record["file_name"]).convert("RGB")
        images.append(np.asarray(image))
        ids.append(record["id"])
        for a in people[record["id"]]:
            owner.append(len(images) - 1)
            kps.append(np.asarray(a["keypoints"], np.float32).reshape(-1, 3))
            boxes.append(np.asarray(a["bbox"], np.float32))
            areas.append(float(a["area"]))
    return KeypointDataset(
        images,
        np.asarray(ids, np.int64),
        np.asarray(owner, np.int64),
        np.stack(kps),
        np.stack(boxes),
        np.asarray(areas, np.float32),
    )


@export("data.TopDownCrops")
@dataclasses.dataclass(frozen=True)
class TopDownCrops:
    """One crop per person.

    Attributes:
      images: ``[P, h, w, 3]`` uint8 crops.
      keypoints: ``[P, K, 3]`` ``(x, y, v)`` in crop pixels; ``v`` as in COCO.
      matrices: ``[P, 2, 3]`` image -> crop maps (``keypoints.crop_matrix``).
      image_ids: ``[P]`` COCO image id of each person; ``boxes``: ``[P, 4]`` xywh;
      areas: ``[P]``.
    """

    images: np.ndarray
    keypoints: np.ndarray
    matrices: np.ndarray
    image_ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


_CHUNK = 128  # persons cropped per call when every image has the same size


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@export("data.topdown_crops")
def topdown_crops(
    dataset: KeypointDataset, out_size: tuple[int, int], *, padding: float = 1.25
) -> TopDownCrops:
    """Crops every person's box (enlarged to the crop's aspect ratio and by ``padding``).

    Uses ``keypoints.crop_matrix`` / ``crop_images`` (``geometry.warp_affine``): in chunks
    of persons when all images have one size (generated data), else one call per image
    (one compilation per image size and person count).
    """
    mats = np.asarray(crop_matrix(dataset.boxes, out_size, padding=padding))
    crops = np.zeros((len(dataset.boxes), *out_size, 3), np.uint8)
    warp = jax.jit(crop_images, static_argnums=2)
    shapes = {np.shape(im) for im in dataset.images}
    if len(shapes) == 1:  # one size: fixed chunks of persons, one compilation
        images = np.asarray(dataset.images)
        for start in range(0, len(crops), _CHUNK):
            rows = np.arange(start, start + _CHUNK) % len(crops)
            src = images[dataset.person_image[rows]].astype(np.float32)
            out = np.asarray(warp(src, mats[rows], tuple(out_size)))
            keep = min(_CHUNK, len(crops) - start)
            crops[start : start + keep] = _to_uint8(out[:keep])
    else:
        for i, image in enumerate(dataset.images):
            rows = np.flatnonzero(dataset.person_image == i)
            if rows.size:
                out = warp(np.asarray(image, np.float32)[None], mats[rows], tuple(out_size))
                crops[rows] = _to_uint8(np.asarray(out))
    kp = np.asarray(keypoints_to_crop(dataset.keypoints[..., :2], mats))
    kp = np.concatenate([kp, dataset.keypoints[..., 2:]], -1)
    return TopDownCrops(
        crops,
        kp.astype(np.float32),
        mats,
        dataset.image_ids[dataset.person_image],
        dataset.boxes,
        dataset.areas,
    )


def _flip(images: np.ndarray, kp: np.ndarray, which: np.ndarray, width: int) -> None:
    """In place: mirror the chosen crops and their keypoints (left / right swapped)."""
    perm = np.arange(kp.shape[1])
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    images[which] = images[which, :, ::-1]
    flipped = kp[which][:, perm]
    flipped[..., 0] = width - flipped[..., 0]
    kp[which] = flipped


@export("data.topdown_batches")
def topdown_batches(
    crops: TopDownCrops,
    batch_size: int,
    *,
    shuffle: bool = True,
    flip: bool = True,
    seed: int = 0,
    epoch: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of batches ``{"images" [B, h, w, 3] float32 in [0, 1], "keypoints"
    [B, K, 2], "weights" [B, K], "index" [B]}``; the last partial batch is dropped when
    shuffling. ``flip``: each crop is mirrored with probability 1/2 with the COCO
    left / right swap (``keypoints.flip_keypoints``'s rule ``x -> w - x``). A keypoint's
    weight is 1 where it is labelled (v > 0) and inside the crop.
    """
    rng = np.random.default_rng([seed, epoch])
    n = len(crops)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if shuffle else n
    h, w = crops.images.shape[1:3]
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        images = crops.images[idx].copy()
        kp = crops.keypoints[idx].copy()
        if flip:
            _flip(images, kp, rng.uniform(size=len(idx)) < 0.5, w)
        inside = (kp[..., 0] >= 0) & (kp[..., 0] < w) & (kp[..., 1] >= 0) & (kp[..., 1] < h)
        yield {
            "images": images.astype(np.float32) / 255.0,
            "keypoints": kp[..., :2],
            "weights": ((kp[..., 2] > 0) & inside).astype(np.float32),
            "index": idx,
        }
