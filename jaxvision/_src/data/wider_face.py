"""WIDER FACE annotations: RetinaFace's ``label.txt`` with 5 landmarks, and the original lists.

Two text formats are read, told apart by their first non-blank line:

- RetinaFace (``retinaface_gt_v1.1``, used by insightface and biubug6's port): a line
  ``# <image path>`` opens each image, then one line per face with 4 numbers ``x y w h``
  (validation and test lists) or 20: ``x y w h`` then five ``(lx, ly, flag)`` triples
  (left eye, right eye, nose, left and right mouth corner) and a final quality value.
  A face without landmarks has ``-1`` in every landmark field.
- The original ``wider_face_train_bbx_gt.txt``: the image path, the number of faces ``n``,
  then ``n`` lines ``x y w h blur expression illumination invalid occlusion pose`` (an image
  with no face still has one line of zeros).

Boxes come out as ``xyxy`` pixels (``x + w``, ``y + h``), as the RetinaFace port does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxvision._src.export import export
from jaxvision._src.models.face_detector_loss import FaceTargets


@export("data.FaceAnnotation")
@dataclasses.dataclass(frozen=True)
class FaceAnnotation:
    """The faces of one image.

    Attributes:
      path: the image path (joined to ``image_root`` when the reader was given one).
      boxes: ``[N, 4]`` float32 ``xyxy`` pixels.
      landmarks: ``[N, 5, 2]`` float32 ``(x, y)`` pixels; -1 where absent.
      landmark_valid: ``[N]`` bool, True where the face has its 5 landmarks.
      invalid: ``[N]`` bool, WIDER FACE's ``invalid`` attribute (original lists only;
        False otherwise). Evaluations usually ignore these faces.

    Examples:
      >>> a = FaceAnnotation("a.jpg", np.array([[0.0, 0, 8, 8]]), np.zeros((1, 5, 2)),
      ...                    np.array([True]), np.array([False]))
      >>> len(a)
      1
    """

    path: str
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_valid: np.ndarray
    invalid: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _numbers(line: str, lineno: int, source: str) -> list[float]:
    try:
        return [float(v) for v in line.split()]
    except ValueError:
        raise ValueError(f"{source}:{lineno}: expected numbers, got {line!r}") from None


def _annotation(path: str, rows: list[list[float]], invalid: list[bool]) -> FaceAnnotation:
    n = len(rows)
    boxes = np.zeros((n, 4), np.float32)
    landmarks = np.full((n, 5, 2), -1.0, np.float32)
    for i, row in enumerate(rows):
        x, y, w, h = row[:4]
        boxes[i] = (x, y, x + w, y + h)
        if len(row) >= 19:
            landmarks[i] = np.asarray(row[4:19], np.float32).reshape(5, 3)[:, :2]
    valid = np.all(landmarks >= 0, axis=(1, 2))
    landmarks[~valid] = -1.0
    return FaceAnnotation(path, boxes, landmarks, valid, np.asarray(invalid, bool).reshape(n))


def _lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines without trailing blank ones; a blank line inside is an error later."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [(i + 1, line.strip()) for i, line in enumerate(lines)]


def _parse_retinaface(lines: list[tuple[int, str]], source: str, root: Path | None):
    images: list[FaceAnnotation] = []
    path, rows = None, []
    for lineno, line in lines:
        if not line:
            raise ValueError(f"{source}:{lineno}: empty annotation line")
        if line.startswith("#"):
            if path is not None:
                images.append(_annotation(path, rows, [False] * len(rows)))
            name = line[1:].strip()
            path, rows = str(root / name) if root else name, []
            continue
        if path is None:
            raise ValueError(f"{source}:{lineno}: face line before the first '# <image>' line")
        values = _numbers(line, lineno, source)
        if len(values) not in (4, 19, 20):
            raise ValueError(
                f"{source}:{lineno}: expected 4 (x y w h) or 20 (box, 5 landmarks, quality) "
                f"numbers, got {len(values)}"
            )
        rows.append(values)
    if path is not None:
        images.append(_annotation(path, rows, [False] * len(rows)))
    return images


def _parse_original(lines: list[tuple[int, str]], source: str, root: Path | None):
    images: list[FaceAnnotation] = []
    it = iter(lines)

    def take(what: str) -> tuple[int, str]:
        item = next(it, None)
        if item is None:
            raise ValueError(f"{source}: file ends where {what} was expected")
        if not item[1]:
            raise ValueError(f"{source}:{item[0]}: empty annotation line")
        return item

    for lineno, name in it:
        if not name:
            raise ValueError(f"{source}:{lineno}: empty annotation line")
        count_no, count = take("the number of faces")
        if not count.isdigit():
            raise ValueError(f"{source}:{count_no}: expected the number of faces, got {count!r}")
        rows, invalid = [], []
        for _ in range(max(int(count), 1)):
            row_no, line = take("a face line")
            values = _numbers(line, row_no, source)
            if len(values) != 10:
                raise ValueError(f"{source}:{row_no}: expected 10 numbers, got {len(values)}")
            rows.append(values[:4])
            invalid.append(values[7] > 0)
        if int(count) == 0:
            rows, invalid = [], []
        images.append(_annotation(str(root / name) if root else name, rows, invalid))
    return images


@export("data.read_wider_face")
def read_wider_face(
    path: str | Path, *, image_root: str | Path | None = None
) -> list[FaceAnnotation]:
    """Reads a WIDER FACE annotation file: RetinaFace's ``label.txt`` or the original list.

    Args:
      path: the annotation file (``train/label.txt`` of ``retinaface_gt_v1.1``, or
        ``wider_face_train_bbx_gt.txt``).
      image_root: directory the image paths are relative to (``WIDER_train/images``);
        when given, every :attr:`FaceAnnotation.path` is joined to it.

    Returns:
      One :class:`FaceAnnotation` per image, in file order.

    Raises:
      ValueError: a blank line inside the file (trailing blank lines are allowed), a face
        line with the wrong count of numbers or a non-number, or a truncated file, with
        the file name and line number.

    References:
      Yang et al., "WIDER FACE: A Face Detection Benchmark", CVPR 2016; Deng et al.,
      "RetinaFace", CVPR 2020 (the landmark annotations).

    Examples:
      >>> import tempfile, pathlib
      >>> f = pathlib.Path(tempfile.mkdtemp()) / "label.txt"
      >>> _ = f.write_text("# a.jpg\\n10 20 30 40\\n")
      >>> read_wider_face(f)[0].boxes
      array([[10., 20., 40., 60.]], dtype=float32)
    """
    path = Path(path)
    lines = _lines(path.read_text())
    root = Path(image_root) if image_root is not None else None
    first = next((line for _, line in lines if line), "")
    if first.startswith("#"):
        return _parse_retinaface(lines, str(path), root)
    return _parse_original(lines, str(path), root)


@export("data.pad_faces")
def pad_faces(annotations: Iterable[FaceAnnotation], max_faces: int) -> FaceTargets:
    """Stacks per-image faces into padded :class:`~jaxvision.models.FaceTargets` (NumPy).

    Images with more than ``max_faces`` faces keep the first ``max_faces``.

    Args:
      annotations: :class:`FaceAnnotation` (or anything with ``boxes``, ``landmarks``,
        ``landmark_valid``) per image.
      max_faces: ``G``, the padded number of faces.

    Returns:
      ``FaceTargets(boxes [B, G, 4], landmarks [B, G, 5, 2], valid [B, G],
      landmark_valid [B, G])`` as NumPy arrays.

    Examples:
      >>> a = FaceAnnotation("a.jpg", np.array([[0.0, 0, 8, 8]]), np.zeros((1, 5, 2)),
      ...                    np.array([True]), np.array([False]))
      >>> pad_faces([a], 3).valid
      array([[ True, False, False]])
    """
    annotations = list(annotations)
    b, g = len(annotations), int(max_faces)
    boxes = np.zeros((b, g, 4), np.float32)
    landmarks = np.zeros((b, g, 5, 2), np.float32)
    valid = np.zeros((b, g), bool)
    lm_valid = np.zeros((b, g), bool)
    for i, a in enumerate(annotations):
        n = min(len(a.boxes), g)
        boxes[i, :n] = a.boxes[:n]
        landmarks[i, :n] = a.landmarks[:n]
        valid[i, :n] = True
        lm_valid[i, :n] = a.landmark_valid[:n]
    return FaceTargets(boxes, landmarks, valid, lm_valid)
