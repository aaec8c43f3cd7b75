"""COCO-format detection I/O: export a dataset, read one back strictly, batch it.

The reader checks every record and raises :class:`CocoFormatError` naming the file, the
record and the field; nothing is skipped silently. Batches are static-shaped: images are
padded into a few square size buckets (few shapes to compile) with a pixel mask, and
targets are padded to a fixed count with a target mask.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxvision._src.boxes.formats import convert_host
from jaxvision._src.data.datasets import CocoDetection, CocoFormatError, DetectionDataset
from jaxvision._src.export import export

_BOX_TOLERANCE = 1.0  # pixels a box may exceed its image (rounding in the annotation tools)


@export("data.export_coco")
def export_coco(
    dataset: DetectionDataset, folder: str | Path, *, annotation_name: str = "annotations.json"
) -> Path:
    """Writes a dataset in COCO detection format: PNG images plus one annotation JSON.

    Layout: ``folder/images/<image_id:06d>.png`` and ``folder/<annotation_name>``. Category
    ids are ``label + 1`` (COCO reserves 0); boxes are written as COCO ``[x, y, w, h]`` in
    pixels.

    Args:
      dataset: the images ``[N, H, W, 3]`` and padded targets to write.
      folder: output folder, created if missing.
      annotation_name: file name of the annotation JSON inside ``folder``.

    Returns:
      The path of the annotation JSON.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    height, width = dataset.images.shape[1:3]
    for i, image_id in enumerate(dataset.image_ids.tolist()):
        file_name = f"{image_id:06d}.png"
        Image.fromarray(dataset.images[i]).save(folder / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for box, label in zip(
            dataset.boxes[i][dataset.mask[i]], dataset.labels[i][dataset.mask[i]], strict=True
        ):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"}
        for i, name in enumerate(dataset.class_names)
    ]
    path = folder / annotation_name
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def _fail(file: Path, where: str, field: str, problem: str) -> CocoFormatError:
    return CocoFormatError(f"{file}: {where}: field {field!r}: {problem}")


def _field(file: Path, where: str, record: Any, field: str, kinds: tuple[type, ...]) -> Any:
    if not isinstance(record, dict):
        raise CocoFormatError(f"{file}: {where}: expected an object, got {type(record).__name__}")
    if field not in record:
        raise _fail(file, where, field, "missing")
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise _fail(file, where, field, f"expected {names}, got {value!r}")
    return value


def load_coco_json(file: Path) -> Any:
    """Parses a JSON file (UTF-8, or UTF-16/32 with the JSON spec's detection)."""
    try:
        return json.loads(file.read_bytes())
    except UnicodeDecodeError as e:
        raise CocoFormatError(
            f"{file}: not UTF-8 text (JSON files are UTF-8; re-save it so): {e}"
        ) from None
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"{file}: not valid JSON: {e}") from None


def fill_annotation_defaults(file: Path, annotations: list[Any]) -> None:
    """The one rule for the fields pycocotools needs: ``iscrowd`` 0, ``area`` ``w * h``.

    Fills them in place where missing (``area`` from ``bbox``, as ``export_coco`` writes
    and as pycocotools' ``loadRes`` does for detections); a present ``area`` must be a
    finite number ``>= 0``.
    """
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            continue
        ann.setdefault("iscrowd", 0)
        where = f"annotations[{i}] (id={ann.get('id')})"
        if "area" not in ann:
            bbox = ann.get("bbox")
            if isinstance(bbox, list) and len(bbox) == 4:
                try:
                    ann["area"] = float(bbox[2]) * float(bbox[3])
                except (TypeError, ValueError):
                    pass  # the bbox check names it
            continue
        area = ann["area"]
        if (
            isinstance(area, bool)
            or not isinstance(area, int | float)
            or not math.isfinite(area)
            or area < 0
        ):
            raise _fail(file, where, "area", f"expected a finite number >= 0, got {area!r}")


@export("data.read_coco_detection")
def read_coco_detection(
    annotation_file: str | Path, image_dir: str | Path, *, check_images: bool = True
) -> CocoDetection:
    """Reads and checks a COCO detection annotation file.

    Every image, annotation and category record is checked: required fields and their
    types, unique ids, references to known images and categories, finite positive box
    sizes inside the image (within one pixel, then clipped; a box left with no area by the
    clipping is an error, never an inverted box). Missing ``iscrowd`` is filled with 0 and
    missing ``area`` with the box's ``w * h``, in ``coco`` too, so that ``coco_evaluate``
    finds every field pycocotools needs. Crowd annotations
    (``iscrowd = 1``) stay in ``coco`` for evaluation but are not training targets, as in
    DETR. Images without annotations are kept (they teach "no object").

    Args:
      annotation_file: path of the COCO JSON.
      image_dir: folder holding the images named by ``file_name``.
      check_images: also check that every image file exists (sizes are checked on read).

    Returns:
      A :class:`CocoDetection`.

    Raises:
      CocoFormatError: naming the file, the record (list and index, with its id) and the
        field at fault.
    """
    file = Path(annotation_file)
    image_dir = Path(image_dir)
    coco = _load_json(file)
    categories, class_names = _read_categories(file, coco["categories"])
    index_of, file_names, sizes = _read_images(file, coco["images"], image_dir, check_images)
    fill_annotation_defaults(file, coco["annotations"])
    boxes, labels = _read_annotations(file, coco["annotations"], categories, index_of, sizes)
    return CocoDetection(
        annotation_file=file,
        image_dir=image_dir,
        coco=coco,
        image_ids=np.asarray(list(index_of), np.int64),
        file_names=tuple(file_names),
        sizes=np.asarray(sizes, np.int64).reshape(-1, 2),
        boxes=tuple(np.asarray(b, np.float32).reshape(-1, 4) for b in boxes),
        labels=tuple(np.asarray(lab, np.int32) for lab in labels),
        category_ids=np.asarray(list(categories), np.int64),
        class_names=tuple(class_names),
    )


def _load_json(file: Path) -> dict[str, Any]:
    """The parsed file, with the three top-level lists checked."""
    coco = load_coco_json(file)
    if not isinstance(coco, dict):
        raise CocoFormatError(f"{file}: top level: expected an object, got {type(coco).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise CocoFormatError(f"{file}: top level: field {key!r}: missing or not a list")
    return coco


def _read_categories(file: Path, records: list) -> tuple[dict[int, int], list[str]]:
    """``({category id: contiguous label}, class names)``."""
    categories: dict[int, int] = {}
    class_names = []
    for i, cat in enumerate(records):
        where = f"categories[{i}]"
        cid = _field(file, where, cat, "id", (int,))
        name = _field(file, where, cat, "name", (str,))
        if cid in categories:
            raise _fail(file, where, "id", f"duplicate category id {cid}")
        categories[cid] = len(class_names)
        class_names.append(name)
    if not categories:
        raise CocoFormatError(f"{file}: top level: field 'categories': empty")
    return categories, class_names


def _read_images(
    file: Path, records: list, image_dir: Path, check_images: bool
) -> tuple[dict[int, int], list[str], list[tuple[int, int]]]:
    """``({image id: index}, file names, (height, width) sizes)`` in file order."""
    index_of: dict[int, int] = {}
    file_names, sizes = [], []
    for i, img in enumerate(records):
        where = f"images[{i}]"
        iid = _field(file, where, img, "id", (int,))
        where = f"images[{i}] (id={iid})"
        name = _field(file, where, img, "file_name", (str,))
        height = _field(file, where, img, "height", (int,))
        width = _field(file, where, img, "width", (int,))
        if iid in index_of:
            raise _fail(file, where, "id", f"duplicate image id {iid}")
        if height < 1 or width < 1:
            raise _fail(file, where, "height/width", f"must be >= 1, got {height}x{width}")
        if check_images and not (image_dir / name).is_file():
            raise _fail(file, where, "file_name", f"no such file {image_dir / name}")
        index_of[iid] = len(file_names)
        file_names.append(name)
        sizes.append((height, width))
    return index_of, file_names, sizes


def _read_annotations(
    file: Path,
    records: list,
    categories: dict[int, int],
    index_of: dict[int, int],
    sizes: list[tuple[int, int]],
) -> tuple[list[list[list[float]]], list[list[int]]]:
    """Per image, the clipped ``xyxy`` boxes and labels of the non-crowd annotations."""
    boxes: list[list[list[float]]] = [[] for _ in sizes]
    labels: list[list[int]] = [[] for _ in sizes]
    seen: set[int] = set()
    for i, ann in enumerate(records):
        where = f"annotations[{i}]"
        aid = _field(file, where, ann, "id", (int,))
        where = f"annotations[{i}] (id={aid})"
        if aid in seen:
            raise _fail(file, where, "id", f"duplicate annotation id {aid}")
        seen.add(aid)
        iid = _field(file, where, ann, "image_id", (int,))
        if iid not in index_of:
            raise _fail(file, where, "image_id", f"no image with id {iid}")
        cid = _field(file, where, ann, "category_id", (int,))
        if cid not in categories:
            raise _fail(file, where, "category_id", f"no category with id {cid}")
        k = index_of[iid]
        box = _checked_box(file, where, ann, *sizes[k])
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise _fail(file, where, "iscrowd", f"expected 0 or 1, got {crowd!r}")
        if crowd:
            continue
        boxes[k].append(box)
        labels[k].append(categories[cid])
    return boxes, labels


def _checked_box(file: Path, where: str, ann: Any, height: int, width: int) -> list[float]:
    """The annotation's ``[x, y, w, h]`` checked against its image, as clipped ``xyxy``."""
    bbox = _field(file, where, ann, "bbox", (list,))
    if len(bbox) != 4 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
    ):
        raise _fail(file, where, "bbox", f"expected 4 finite numbers [x, y, w, h], got {bbox}")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise _fail(file, where, "bbox", f"width and height must be > 0, got {bbox}")
    tol = _BOX_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise _fail(
            file, where, "bbox", f"{bbox} lies outside its image of {width}x{height} pixels"
        )
    x0, x1 = min(max(x, 0.0), width), min(max(x + w, 0.0), width)
    y0, y1 = min(max(y, 0.0), height), min(max(y + h, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        raise _fail(file, where, "bbox", f"{bbox} has no area inside its image of {width}x{height}")
    return [x0, y0, x1, y1]


@export("data.bucket_size")
def bucket_size(height: int, width: int, buckets: Sequence[int]) -> int:
    """The smallest square bucket side that holds an image of ``height x width``."""
    for side in sorted(buckets):
        if height <= side and width <= side:
            return side
    raise ValueError(
        f"an image of {height}x{width} exceeds the largest bucket {max(buckets)}; "
        f"resize it or add a larger bucket to `buckets`"
    )


@export("data.coco_batches")
def coco_batches(
    dataset: CocoDetection,
    batch_size: int,
    *,
    max_boxes: int,
    buckets: Sequence[int] = (64, 128, 256, 512, 800, 1024, 1333),
    shuffle: bool = False,
    seed: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Static-shaped, padded detection batches from a COCO dataset.

    Images are grouped by size bucket (the smallest square side in ``buckets`` that holds
    them) so that a whole epoch compiles at most ``len(buckets)`` shapes. Each batch holds
    images of one bucket; the last batch of a bucket is padded with empty images whose
    ``valid`` flag is False. Every image appears exactly once per pass.

    Args:
      dataset: a :class:`CocoDetection`.
      batch_size: images per batch ``B``.
      max_boxes: targets per image ``T``; an image with more objects raises ValueError
        (raise ``max_boxes``; nothing is dropped).
      buckets: square bucket sides ``S`` in pixels.
      shuffle: shuffle image order (within buckets) and batch order.
      seed: the shuffle seed.

    Yields:
      Dicts of NumPy arrays: ``images [B, S, S, 3]`` uint8, ``pixel_mask [B, S, S]`` bool
      (True on real pixels, top-left aligned), ``boxes [B, T, 4]`` float32 ``cxcywh``
      normalised by each image's own (unpadded) width and height, as in DETR, ``labels
      [B, T]`` int32 (padding ``-1``), ``mask [B, T]`` bool, ``image_ids [B]`` int64 (``-1``
      for padding), ``sizes [B, 2]`` int32 ``(height, width)``, ``valid [B]`` bool.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    by_bucket: dict[int, list[int]] = {}
    for i, (h, w) in enumerate(dataset.sizes.tolist()):
        n = len(dataset.labels[i])
        if n > max_boxes:
            raise ValueError(
                f"image id {dataset.image_ids[i]} has {n} objects but max_boxes={max_boxes}"
            )
        by_bucket.setdefault(bucket_size(h, w, buckets), []).append(i)
    rng = np.random.default_rng(seed)
    plan = []
    for side, members in sorted(by_bucket.items()):
        order = rng.permutation(members) if shuffle else np.asarray(members)
        plan += [(side, order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    for side, indices in plan:
        yield _batch(dataset, indices.tolist(), side, batch_size, max_boxes)


def _batch(
    dataset: CocoDetection, indices: list[int], side: int, batch_size: int, max_boxes: int
) -> dict[str, np.ndarray]:
    b, t = batch_size, max_boxes
    out = {
        "images": np.zeros((b, side, side, 3), np.uint8),
        "pixel_mask": np.zeros((b, side, side), bool),
        "boxes": np.zeros((b, t, 4), np.float32),
        "labels": np.full((b, t), -1, np.int32),
        "mask": np.zeros((b, t), bool),
        "image_ids": np.full((b,), -1, np.int64),
        "sizes": np.zeros((b, 2), np.int32),
        "valid": np.zeros((b,), bool),
    }
    for j, i in enumerate(indices):
        image = dataset.read_image(i)
        h, w = image.shape[:2]
        out["images"][j, :h, :w] = image
        out["pixel_mask"][j, :h, :w] = True
        n = len(dataset.labels[i])
        out["boxes"][j, :n] = xyxy_pixels_to_cxcywh_unit(dataset.boxes[i], h, w)
        out["labels"][j, :n] = dataset.labels[i]
        out["mask"][j, :n] = True
        out["image_ids"][j] = dataset.image_ids[i]
        out["sizes"][j] = (h, w)
        out["valid"][j] = True
    return out


def xyxy_pixels_to_cxcywh_unit(boxes: np.ndarray, height: float, width: float) -> np.ndarray:
    """``[..., 4]`` ``xyxy`` pixel boxes to ``cxcywh`` normalised by the image size."""
    cxcywh = convert_host(np.asarray(boxes, np.float32), "xyxy", "cxcywh")
    return (cxcywh / np.array([width, height, width, height], np.float32)).astype(np.float32)


@export("data.detection_targets")
def detection_targets(dataset: DetectionDataset) -> dict[str, np.ndarray]:
    """The in-memory twin of :func:`coco_batches` for an equal-sized dataset, unbatched.

    Returns:
      ``images [N, H, W, 3]`` uint8, ``pixel_mask [N, H, W]`` bool (all True), ``boxes [N,
      T, 4]`` ``cxcywh`` normalised by the image size, ``labels [N, T]``, ``mask [N, T]``,
      ``image_ids [N]`` and ``sizes [N, 2]``, ready to be indexed into batches.
    """
    n, h, w = dataset.images.shape[:3]
    boxes = np.where(
        dataset.mask[..., None], xyxy_pixels_to_cxcywh_unit(dataset.boxes, h, w), 0.0
    ).astype(np.float32)
    return {
        "images": dataset.images,
        "pixel_mask": np.ones((n, h, w), bool),
        "boxes": boxes,
        "labels": dataset.labels,
        "mask": dataset.mask,
        "image_ids": dataset.image_ids,
        "sizes": np.tile(np.asarray([[h, w]], np.int32), (n, 1)),
    }
