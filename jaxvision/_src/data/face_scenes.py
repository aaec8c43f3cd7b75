"""Generated detection scenes: many faces at many scales and rotations on varied backgrounds.

Each scene pastes faces of the generated identities (:func:`generate_faces`, with their
exact five landmarks and identity) and, optionally, real face crops from scikit-image's
``data.lfw_subset()`` (box-only faces: no landmarks) onto a background drawn from smooth
colour fields, textures and photographs shipped with scikit-image (none with a human face
except ``coins``, whose ancient coins bear small unlabelled profile heads), with coloured
clutter (ellipses and rectangles, some skin-toned) as distractors.

The box of a generated face is the axis-aligned extent of its head ellipse (centre
``(56, 66)``, radii ``(36, 46)`` in the 112 x 112 canonical frame of the ArcFace template,
mapped by the similarity from the template to the face's landmarks): forehead to chin and
cheek to cheek, as WIDER FACE annotators draw them. A real crop's box is the crop itself
(the LFW crops are tight).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import ndimage

from jaxvision._src.data.wider_face import FaceAnnotation
from jaxvision._src.export import export

if TYPE_CHECKING:
    from jaxvision._src.data.faces import FaceIdentities

# insightface's 112 x 112 ArcFace template (eyes, nose tip, mouth corners).
_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
_HEAD_CENTRE, _HEAD_RADII = np.array([56.0, 66.0]), np.array([36.0, 46.0])
# Crop side per unit of face-box width: the head is ~72 / 112 of a generated crop.
_CROP_PER_BOX = 112 / 72 / 0.92
_BACKGROUNDS = (
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "hubble_deep_field",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "text",
    "cell",
)


@export("data.FaceScenes")
class FaceScenes(NamedTuple):
    """Scenes from :func:`generate_face_scenes`.

    Attributes:
      images: ``[N, S, S, 3]`` float32 in ``[0, 1]``.
      annotations: one :class:`FaceAnnotation` per scene (boxes ``xyxy`` pixels, 5
        landmarks, ``landmark_valid`` False for the real box-only faces).
      identities: per scene ``[n]`` int32 identity of each face, -1 for real faces.

    Examples:
      >>> FaceScenes._fields
      ('images', 'annotations', 'identities')
    """

    images: np.ndarray
    annotations: list[FaceAnnotation]
    identities: list[np.ndarray]


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    from skimage import data

    out = []
    for name in _BACKGROUNDS:
        im = getattr(data, name)().astype(np.float32)
        im = im / 255.0 if im.max() > 1 else im
        out.append(np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im[..., :3])
    return tuple(out)


@functools.cache
def _lfw_faces() -> np.ndarray:
    from skimage import data

    return data.lfw_subset()[:100].astype(np.float32)  # the first 100 are faces


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # a smooth colour field
        low = rng.uniform(0, 1, (rng.integers(2, 6), rng.integers(2, 6), 3))
        img = ndimage.zoom(low, (size / low.shape[0], size / low.shape[1], 1), order=1)
        img = img[:size, :size]
    else:  # a random crop of a photograph or texture, rescaled
        photo = _photos()[rng.integers(len(_BACKGROUNDS))]
        side = int(rng.uniform(0.3, 1.0) * min(photo.shape[:2]))
        y, x = (
            rng.integers(0, photo.shape[0] - side + 1),
            rng.integers(0, photo.shape[1] - side + 1),
        )
        crop = photo[y : y + side, x : x + side]
        img = ndimage.zoom(crop, (size / side, size / side, 1), order=1)[:size, :size]
        if rng.uniform() < 0.5:
            img = img * rng.uniform(0.5, 1.2, 3)
    img = np.pad(img, ((0, size - img.shape[0]), (0, size - img.shape[1]), (0, 0)), mode="edge")
    return _clutter(rng, img, size)


def _clutter(rng: np.random.Generator, img: np.ndarray, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(3, size / 4, 2)
        if rng.uniform() < 0.3:  # skin-toned distractor
            colour = rng.uniform(0.35, 0.95) * np.array([1.0, 0.78, 0.62])
        else:
            colour = rng.uniform(0, 1, 3)
        if rng.uniform() < 0.5:
            mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1
        else:
            mask = (np.abs(xs - cx) < rx) & (np.abs(ys - cy) < ry)
        img = np.where(mask[..., None], colour, img)
    return img


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ A src + t`` for ``[N, 5, 2]`` point sets (Umeyama).

    The NumPy counterpart of ``geometry.estimate_similarity`` for the host-side generator
    (one small problem per pasted face, where a device call per face would dominate).
    """
    ms, md = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    s, d = src - ms, dst - md
    # For z = x + iy, the similarity is d = c s with one complex c = a + ib.
    zs, zd = s[..., 0] + 1j * s[..., 1], d[..., 0] + 1j * d[..., 1]
    c = (np.conj(zs) * zd).sum(1) / (np.abs(zs) ** 2).sum(1)
    a = np.stack([np.stack([c.real, -c.imag], -1), np.stack([c.imag, c.real], -1)], -2)
    t = md[:, 0] - np.einsum("nij,nj->ni", a, ms[:, 0])
    return a, t


def _head_boxes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes ``[N, 4]`` and head-ellipse masks' parameters from landmarks ``[N, 5, 2]``."""
    a, t = _fit_similarity(np.broadcast_to(_TEMPLATE, landmarks.shape), landmarks)
    centre = np.einsum("nij,j->ni", a, _HEAD_CENTRE) + t
    # Half extents of the mapped ellipse along x and y: |A diag(r)| row norms.
    half = np.linalg.norm(a * _HEAD_RADII[None, None, :], axis=2)
    return np.concatenate([centre - half, centre + half], 1), a


def _place(rng, placed: list[np.ndarray], size: int, side: float) -> np.ndarray | None:
    """A top-left corner for a ``side`` box inside the scene overlapping no placed box much."""
    for _ in range(20):
        x, y = rng.uniform(-0.1 * side, size - 0.9 * side, 2)
        box = np.array([x, y - 0.15 * side, x + side, y + 1.15 * side])  # heads are tall
        if all(_overlap(box, p) < 0.15 for p in placed):
            return box
    return None


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _paste(img, patch, alpha, x0, y0):
    """Alpha-blends ``patch [h, w, 3]`` at integer ``(x0, y0)``, clipped to the image."""
    h, w = patch.shape[:2]
    size_y, size_x = img.shape[:2]
    ya, yb, xa, xb = max(y0, 0), min(y0 + h, size_y), max(x0, 0), min(x0 + w, size_x)
    if ya >= yb or xa >= xb:
        return
    p = patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
    m = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    img[ya:yb, xa:xb] = img[ya:yb, xa:xb] * (1 - m) + p * m


def _generated_face(rng, img, identities, identity, side, x0, y0, max_rotation, seed):
    # Imported here: the generated identities come from the face-recognition module.
    from jaxvision._src.data.faces import generate_faces

    crop = max(int(round(side * _CROP_PER_BOX)), 8)
    face = generate_faces(identities, [identity], size=crop, seed=seed, max_rotation=max_rotation)
    box, a = _head_boxes(face.landmarks.astype(np.float64))
    # Alpha: the head ellipse, a little wider and higher for the hair, feathered.
    ys, xs = np.mgrid[0:crop, 0:crop] + 0.5
    inv = np.linalg.inv(a[0])
    centre = (box[0, :2] + box[0, 2:]) / 2
    u, v = np.einsum("ij,jhw->ihw", inv, np.stack([xs - centre[0], ys - centre[1]]))
    r = np.hypot(u / (_HEAD_RADII[0] + 3), (v + 3) / (_HEAD_RADII[1] + 2))
    alpha = np.clip((1.0 - r) * crop / 2.5, 0, 1)
    ix, iy = int(round(x0)), int(round(y0))
    _paste(img, face.images[0], alpha, ix, iy)
    offset = np.array([ix, iy], np.float32)
    return box[0] + np.tile(offset, 2), face.landmarks[0] + offset


def _real_face(rng, img, side, x0, y0):
    lfw = _lfw_faces()
    grey = lfw[rng.integers(len(lfw))]
    n = max(int(round(side)), 4)
    patch = ndimage.zoom(grey, n / grey.shape[0], order=1)[:n, :n]
    patch = patch[..., None] * rng.uniform(0.8, 1.1, 3)
    ix, iy = int(round(x0)), int(round(y0))
    _paste(img, patch, np.ones(patch.shape[:2]), ix, iy)
    return np.array([ix, iy, ix + patch.shape[1], iy + patch.shape[0]], np.float32)


@export("data.generate_face_scenes")
def generate_face_scenes(
    num_scenes: int,
    identities: FaceIdentities,
    *,
    size: int = 128,
    faces_per_scene: tuple[int, int] = (0, 6),
    face_sizes: tuple[float, float] = (12.0, 80.0),
    max_rotation: float = 30.0,
    real_fraction: float = 0.15,
    identity_range: tuple[int, int] | None = None,
    seed: int = 0,
) -> FaceScenes:
    """Renders detection scenes with boxes, 5 landmarks and identities (see module doc).

    Face box widths are log-uniform in ``face_sizes``; each face is placed so that it
    overlaps earlier ones by less than 15% of the smaller box (faces may leave the image
    by up to 10% of their side; boxes are clipped to the image then).

    Args:
      num_scenes: ``N``.
      identities: from :func:`sample_identities`.
      size: scene side ``S`` in pixels.
      faces_per_scene: ``(lo, hi)``: each scene has ``lo..hi`` faces (uniform).
      face_sizes: ``(min, max)`` face box width in pixels.
      max_rotation: in-plane rotation of generated faces, uniform in +-degrees.
      real_fraction: probability that a face is a real LFW crop (box only).
      identity_range: ``(lo, hi)``: draw identities from ``lo..hi - 1`` (held-out
        identities for a pipeline test); default all.
      seed: the seed of everything random.

    Returns:
      :class:`FaceScenes`.

    Examples:
      >>> from jaxvision import data
      >>> ids = data.sample_identities(4)
      >>> scenes = data.generate_face_scenes(2, ids, size=64, faces_per_scene=(1, 1))
      >>> scenes.images.shape, scenes.annotations[0].landmarks.shape
      ((2, 64, 64, 3), (1, 5, 2))
    """
    rng = np.random.default_rng(seed)
    lo, hi = identity_range if identity_range is not None else (0, len(identities.skin))
    images = np.empty((num_scenes, size, size, 3), np.float32)
    annotations, ids = [], []
    for n in range(num_scenes):
        img = _background(rng, size)
        placed, lms, lm_valid, who = [], [], [], []
        for _ in range(rng.integers(faces_per_scene[0], faces_per_scene[1] + 1)):
            side = float(np.exp(rng.uniform(*np.log(face_sizes))))
            box = _place(rng, placed, size, side)
            if box is None:
                continue
            if rng.uniform() < real_fraction:
                placed.append(_real_face(rng, img, side, box[0], box[1] + 0.15 * side))
                lms.append(np.full((5, 2), -1.0, np.float32))
                lm_valid.append(False)
                who.append(-1)
                continue
            identity = int(rng.integers(lo, hi))
            crop = side * _CROP_PER_BOX
            corner = (box[:2] + box[2:]) / 2 - crop / 2  # crop centred on the placed box
            face_box, landmarks = _generated_face(
                rng,
                img,
                identities,
                identity,
                side,
                *corner,
                max_rotation,
                int(rng.integers(2**31)),
            )
            placed.append(face_box)
            lms.append(landmarks)
            lm_valid.append(True)
            who.append(identity)
        boxes = np.clip(np.array(placed, np.float32).reshape(-1, 4), 0, size)
        images[n] = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
        annotations.append(
            FaceAnnotation(
                f"scene_{n}",
                boxes,
                np.array(lms, np.float32).reshape(-1, 5, 2),
                np.array(lm_valid, bool),
                np.zeros(len(placed), bool),
            )
        )
        ids.append(np.array(who, np.int32))
    return FaceScenes(images, annotations, ids)
