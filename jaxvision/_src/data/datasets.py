"""The dataset types of ``jaxvision.data``: in-memory detection sets and checked COCO sets.

Readers, writers and generators (``coco.py``, ``shapes.py``) and the evaluation
(``coco_eval.py``) all take their types from here, so that none imports another's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxvision._src.export import export


@export("data.DetectionDataset")
@dataclasses.dataclass(frozen=True)
class DetectionDataset:
    """Images with padded box targets, all in host memory.

    Attributes:
      images: ``[N, H, W, 3]`` uint8 RGB.
      boxes: ``[N, T, 4]`` float32 ``xyxy`` in pixels (x to the right, y down); padding rows
        are zero.
      labels: ``[N, T]`` int32 contiguous class indices ``0..C-1``; padding is ``-1``.
      mask: ``[N, T]`` bool, True for real objects.
      class_names: the ``C`` class names, index ``i`` names label ``i``.
      image_ids: ``[N]`` int64 ids (COCO ``image_id``), starting at 1.
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    class_names: tuple[str, ...]
    image_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@export("data.CocoFormatError")
class CocoFormatError(ValueError):
    """A COCO annotation file is malformed; the message names file, record and field."""


@export("data.CocoDetection")
@dataclasses.dataclass(frozen=True)
class CocoDetection:
    """A checked COCO detection dataset; images are read from disk when batched.

    Attributes:
      annotation_file: the JSON it was read from.
      image_dir: the folder holding the image files.
      coco: the parsed annotation JSON (the ground truth for ``coco_evaluate``).
      image_ids: ``[N]`` COCO image ids, in file order.
      file_names: ``N`` image file names relative to ``image_dir``.
      sizes: ``[N, 2]`` int ``(height, width)`` of each image.
      boxes: ``N`` arrays ``[T_i, 4]`` float32 ``xyxy`` in pixels (crowd regions excluded).
      labels: ``N`` arrays ``[T_i]`` int32 contiguous labels ``0..C-1``.
      category_ids: ``[C]`` the COCO category id of each contiguous label.
      class_names: the ``C`` category names.
    """

    annotation_file: Path
    image_dir: Path
    coco: dict[str, Any]
    image_ids: np.ndarray
    file_names: tuple[str, ...]
    sizes: np.ndarray
    boxes: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    category_ids: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.image_ids.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def read_image(self, index: int) -> np.ndarray:
        """Image ``index`` as ``[H, W, 3]`` uint8 RGB; its size must match the record."""
        path = self.image_dir / self.file_names[index]
        if not path.is_file():
            raise CocoFormatError(
                f"{self.annotation_file}: images[{index}] (id={self.image_ids[index]}): "
                f"field 'file_name': no such file {path}"
            )
        try:
            with Image.open(path) as im:
                image = np.asarray(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, struct.error, ...
            raise CocoFormatError(
                f"{self.annotation_file}: images[{index}] (id={self.image_ids[index]}): "
                f"field 'file_name': cannot decode {path} ({type(e).__name__}: {e}); "
                "the file is truncated or not an image"
            ) from e
        if image.shape[:2] != tuple(self.sizes[index]):
            raise CocoFormatError(
                f"{self.annotation_file}: images[{index}] (id={self.image_ids[index]}): "
                f"fields 'height'/'width' say {tuple(self.sizes[index])} but {path} is "
                f"{image.shape[:2]}"
            )
        return image
