"""Generated person-keypoint data: articulated stick figures with COCO's 17-joint skeleton.

Each image holds 1..``max_people`` figures on a noisy background. A figure is a torso,
head, arms and legs with random joint angles, size, position and a small rotation; left
limbs are drawn in warm colours and right limbs in cool ones, so that left and right can
be told apart (as on real people, where a flip changes the image). Keypoints follow COCO:
visibility 2 where the joint's pixel shows its own figure (or background), 1 where a
later figure or a random occluder covers it, and 0 with ``(0, 0)`` where the joint falls
outside the image. Boxes are the figure's full pixel extent, areas its pixel count.
Deterministic for a seed; train and val draw from independent streams.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxvision._src.export import export
from jaxvision._src.keypoints.constants import COCO_KEYPOINT_NAMES, COCO_SKELETON

_SPLITS = {"train": 0, "val": 1}
_LEFT = (5, 7, 9, 11, 13, 15)
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))


@export("data.KeypointDataset")
@dataclasses.dataclass(frozen=True)
class KeypointDataset:
    """Images with person boxes and COCO keypoints, all in host memory.

    Attributes:
      images: ``[N, H, W, 3]`` uint8 RGB (a list of ``[H_i, W_i, 3]`` for read images).
      image_ids: ``[N]`` int64 ids from 1.
      person_image: ``[P]`` index into ``images`` of each person.
      keypoints: ``[P, 17, 3]`` float32 ``(x, y, v)``, continuous pixels, COCO flags.
      boxes: ``[P, 4]`` float32 ``xywh``.
      areas: ``[P]`` float32 pixel areas.
    """

    images: np.ndarray | list[np.ndarray]
    image_ids: np.ndarray
    person_image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _unit(angle: np.ndarray) -> np.ndarray:
    """Direction at ``angle`` radians from straight down (y grows downwards)."""
    return np.stack([np.sin(angle), np.cos(angle)], -1)


def _pose(rng: np.random.Generator) -> np.ndarray:
    """17 joints of a figure of height ~1 in a frame with the pelvis at the origin."""
    j = np.zeros((17, 2))
    lean = rng.normal(0, 0.12)
    neck = -0.42 * _unit(lean)
    head = neck - 0.15 * _unit(lean + rng.normal(0, 0.2))
    turn = rng.uniform(-0.04, 0.04)  # the face turns a little left or right
    j[0] = head + [turn, 0.03]
    j[1], j[2] = head + [0.035 + turn, -0.01], head + [-0.035 + turn, -0.01]
    j[3], j[4] = head + [0.07, 0.0], head + [-0.07, 0.0]
    side = np.array([1.0, -1.0])  # left joints on the image's right (a figure facing us)
    for s, (sh, el, wr, hip, kn, an) in zip(
        side, ((5, 7, 9, 11, 13, 15), (6, 8, 10, 12, 14, 16)), strict=True
    ):
        j[sh] = neck + [s * 0.11, 0.02]
        a_up = s * rng.uniform(-0.3, 2.6)
        j[el] = j[sh] + 0.17 * _unit(np.array(-a_up))
        j[wr] = j[el] + 0.15 * _unit(np.array(-a_up - s * rng.uniform(-0.2, 1.8)))
        j[hip] = [s * 0.07, 0.0]
        a_th = s * rng.uniform(-0.15, 0.9)
        j[kn] = j[hip] + 0.24 * _unit(np.array(-a_th))
        j[an] = j[kn] + 0.23 * _unit(np.array(-a_th + s * rng.uniform(0.0, 1.2)))
    return j


def _colours(rng: np.random.Generator) -> dict[str, np.ndarray]:
    base = {
        "left": [230, 90, 40],
        "right": [40, 110, 230],
        "torso": [60, 200, 80],
        "head": [240, 200, 160],
    }
    return {k: np.clip(np.array(v) + rng.normal(0, 18, 3), 0, 255) for k, v in base.items()}


def _draw_figure(
    canvas: np.ndarray,
    owner: np.ndarray,
    who: int,
    joints: np.ndarray,
    size: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws one figure (cv2, anti-aliasing off); returns its full ``[H, W]`` mask."""
    import cv2

    col = _colours(rng)
    mask = np.zeros(owner.shape, np.uint8)
    th = max(2, int(round(size * 0.045)))
    pts = [tuple(int(v) for v in np.round(p * 16)) for p in joints]  # 4 fractional bits

    def line(a, b, colour, t):
        cv2.line(canvas, pts[a], pts[b], colour.tolist(), t, cv2.LINE_8, 4)
        cv2.line(mask, pts[a], pts[b], 1, t, cv2.LINE_8, 4)

    hip_c = ((joints[11] + joints[12]) / 2 * 16).round().astype(int)
    sh_c = ((joints[5] + joints[6]) / 2 * 16).round().astype(int)
    torso = np.array([pts[5], pts[6], pts[12], pts[11]], np.int32)
    cv2.fillConvexPoly(canvas, torso, col["torso"].tolist(), cv2.LINE_8, 4)
    cv2.fillConvexPoly(mask, torso, 1, cv2.LINE_8, 4)
    cv2.line(canvas, tuple(hip_c), tuple(sh_c), col["torso"].tolist(), th * 2, cv2.LINE_8, 4)
    for a, b in _LIMBS:
        line(a, b, col["left" if a in _LEFT else "right"], th)
    head = ((joints[3] + joints[4]) / 2 * 16).round().astype(int)
    radius = int(round(np.linalg.norm(joints[3] - joints[4]) / 2 * 16 * 1.1))
    cv2.circle(canvas, tuple(head), radius, col["head"].tolist(), -1, cv2.LINE_8, 4)
    cv2.circle(mask, tuple(head), radius, 1, -1, cv2.LINE_8, 4)
    for k, c in ((1, col["left"]), (2, col["right"]), (0, np.array([120.0, 40, 40]))):
        cv2.circle(canvas, pts[k], max(16, radius // 5), (c * 0.6).tolist(), -1, cv2.LINE_8, 4)
    for k, c in ((3, col["left"]), (4, col["right"])):
        cv2.circle(canvas, pts[k], max(16, radius // 4), c.tolist(), -1, cv2.LINE_8, 4)
    owner[mask > 0] = who
    return mask > 0


def _occlude(canvas: np.ndarray, owner: np.ndarray, rng: np.random.Generator, box) -> None:
    """A textured rectangle over part of a figure's box."""
    x, y, w, h = box
    ow, oh = rng.uniform(0.3, 0.7) * w, rng.uniform(0.15, 0.4) * h
    x0, y0 = int(x + rng.uniform(0, w - ow)), int(y + rng.uniform(0, h - oh))
    x1, y1 = int(x0 + ow), int(y0 + oh)
    hh, ww = owner.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, ww), min(y1, hh)
    if x1 <= x0 or y1 <= y0:
        return
    patch = rng.uniform(40, 200, 3) + rng.normal(0, 25, (y1 - y0, x1 - x0, 3))
    canvas[y0:y1, x0:x1] = np.clip(patch, 0, 255)
    owner[y0:y1, x0:x1] = -2


def _image(rng: np.random.Generator, size: int, max_people: int, occlusion: float):
    canvas = np.clip(rng.uniform(20, 235, 3) + rng.normal(0, 20, (size, size, 3)), 0, 255)
    for _ in range(rng.integers(0, 4)):  # background blobs
        import cv2

        c = tuple(int(v) for v in rng.uniform(0, size, 2))
        cv2.circle(canvas, c, int(rng.uniform(3, size / 6)), rng.uniform(0, 255, 3).tolist(), -1)
    owner = np.full((size, size), -1, np.int32)
    people = []
    for who in range(int(rng.integers(1, max_people + 1))):
        height = rng.uniform(0.35, 0.85) * size
        theta = rng.normal(0, 0.15)
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        centre = rng.uniform(0.1, 0.9, 2) * size
        joints = _pose(rng) @ rot.T * height + centre + [0, 0.1 * height]
        mask = _draw_figure(canvas, owner, who, joints, height, rng)
        people.append((joints, mask))
    boxes = []
    for _joints, mask in people:
        ys, xs = np.nonzero(mask)
        boxes.append(
            [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            if len(xs)
            else [0, 0, 0, 0]
        )
    for box in boxes:
        if rng.uniform() < occlusion and box[2] > 0:
            _occlude(canvas, owner, rng, box)
    out = []
    for who, ((joints, mask), box) in enumerate(zip(people, boxes, strict=True)):
        kp = np.zeros((17, 3), np.float32)
        # cv2 centres pixel i at i; our keypoints centre it at i + 0.5.
        for k, (x, y) in enumerate(joints + 0.5):
            if 0 <= x < size and 0 <= y < size:
                o = owner[int(y), int(x)]
                kp[k] = x, y, 2 if o in (who, -1) else 1
        out.append((kp, np.asarray(box, np.float32), float(mask.sum())))
    return canvas.astype(np.uint8), out


@export("data.keypoints_dataset")
def keypoints_dataset(
    num_images: int,
    *,
    image_size: int = 128,
    max_people: int = 3,
    occlusion: float = 0.3,
    split: str = "train",
    seed: int = 0,
) -> KeypointDataset:
    """Generates articulated figures with COCO keypoints (see the module docstring).

    Args:
      num_images: number of images.
      image_size: square image side in pixels.
      max_people: figures per image, drawn uniformly from ``1..max_people``.
      occlusion: probability that a figure gets a random occluding rectangle.
      split: ``"train"`` or ``"val"`` (independent random streams of ``seed``).
      seed: random seed.

    Returns:
      A :class:`KeypointDataset`.

    Examples:
      >>> ds = keypoints_dataset(2, image_size=64, seed=0)
      >>> ds.images.shape, ds.keypoints.shape[1:]
      ((2, 64, 64, 3), (17, 3))
    """
    if split not in _SPLITS:
        raise ValueError(f"`split` must be one of {tuple(_SPLITS)}, got {split!r}")
    if num_images < 1 or image_size < 16 or max_people < 1:
        raise ValueError("`num_images` >= 1, `image_size` >= 16 and `max_people` >= 1 needed")
    rng = np.random.default_rng([seed, _SPLITS[split]])
    images, owner, kps, boxes, areas = [], [], [], [], []
    for i in range(num_images):
        image, people = _image(rng, image_size, max_people, occlusion)
        images.append(image)
        for kp, box, area in people:
            owner.append(i)
            kps.append(kp)
            boxes.append(box)
            areas.append(area)
    return KeypointDataset(
        images=np.stack(images),
        image_ids=np.arange(1, num_images + 1, dtype=np.int64),
        person_image=np.asarray(owner, np.int64),
        keypoints=np.stack(kps).astype(np.float32),
        boxes=np.stack(boxes).astype(np.float32),
        areas=np.asarray(areas, np.float32),
    )


@export("data.keypoints_to_coco_dict")
def keypoints_to_coco_dict(dataset: KeypointDataset) -> dict:
    """The dataset's annotations as a COCO person-keypoints dict (one ``person`` category).

    Keypoints are written in COCO's own convention: COCO's ``x`` is our continuous ``x``
    (a keypoint at a pixel's centre ``i + 0.5``); unlabelled keypoints are ``0, 0, 0``.
    """
    images = [
        {
            "id": int(i),
            "file_name": f"{int(i):06d}.png",
            "width": int(im.shape[1]),
            "height": int(im.shape[0]),
        }
        for i, im in zip(dataset.image_ids, dataset.images, strict=True)
    ]
    annotations = []
    for p in range(len(dataset.person_image)):
        kp = dataset.keypoints[p]
        annotations.append(
            {
                "id": p + 1,
                "image_id": int(dataset.image_ids[dataset.person_image[p]]),
                "category_id": 1,
                "bbox": [float(v) for v in dataset.boxes[p]],
                "area": float(dataset.areas[p]),
                "iscrowd": 0,
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "keypoints": [float(v) for v in kp.reshape(-1)],
            }
        )
    category = {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
    }
    return {"images": images, "annotations": annotations, "categories": [category]}


@export("data.export_coco_keypoints")
def export_coco_keypoints(
    dataset: KeypointDataset, folder: str | Path, *, annotation_name: str = "annotations.json"
) -> Path:
    """Writes PNG images to ``folder/images/`` and COCO person-keypoints JSON; returns its path."""
    from PIL import Image

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    coco = keypoints_to_coco_dict(dataset)
    for image, record in zip(dataset.images, coco["images"], strict=True):
        Image.fromarray(image).save(folder / "images" / record["file_name"])
    path = folder / annotation_name
    path.write_text(json.dumps(coco))
    return path
