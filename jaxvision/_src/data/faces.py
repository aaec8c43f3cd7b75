"""Generated faces with identities and their exact five landmarks, for recognition demos.

Every identity draws its own face (shape of the head, eye spacing and size, brows, nose
length and width, mouth position, width and lips, skin tone, hair colour and hairline);
every image of it draws nuisances (rotation, scale, translation, expression jitter of the
eyes, mouth and brows, lighting gain and gradient, blur, noise, background). Faces are
drawn in a 112 x 112 canonical frame near the ArcFace template and mapped into the image
by a known similarity, so the five landmarks (eyes, nose tip, mouth corners) are exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from jaxvision._src.export import export

_IDENTITY_RANGES = {
    "eye_spacing": (30.0, 41.0),
    "eye_y": (47.0, 55.0),
    "eye_size": (3.5, 6.0),
    "nose_y": (66.0, 76.0),
    "nose_width": (4.0, 9.0),
    "mouth_y": (87.0, 96.0),
    "mouth_width": (22.0, 34.0),
    "lip": (2.5, 6.0),
    "face_width": (30.0, 40.0),
    "face_height": (40.0, 50.0),
    "hairline": (20.0, 40.0),
    "hair_width": (1.0, 1.25),
    "brow": (1.0, 3.0),
}


@export("data.FaceIdentities")
class FaceIdentities(NamedTuple):
    """Per-identity parameters of ``generate_faces`` (arrays ``[num_identities, ...]``).

    Attributes:
      geometry: ``[I, 13]`` the shape parameters in ``_IDENTITY_RANGES`` order.
      skin: ``[I, 3]`` RGB skin tone; hair: ``[I, 3]`` hair colour; iris: ``[I, 3]``.
    """

    geometry: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray


@export("data.FaceImages")
class FaceImages(NamedTuple):
    """Images from ``generate_faces``.

    Attributes:
      images: ``[N, S, S, 3]`` float32 in ``[0, 1]``.
      landmarks: ``[N, 5, 2]`` float32 ``(x, y)`` in OpenCV's pixel-centre convention
        (left eye, right eye, nose tip, left and right mouth corners).
      labels: ``[N]`` int32 identity of each image.
    """

    images: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray


@export("data.sample_identities")
def sample_identities(num_identities: int, *, seed: int = 0, spread: float = 1.0) -> FaceIdentities:
    """Draws ``num_identities`` face identities (see the module docstring).

    ``spread`` in ``(0, 1]`` scales how far identities differ in geometry and skin tone
    (smaller: harder to tell apart).
    """
    rng = np.random.default_rng(seed)
    lo, hi = np.array(list(_IDENTITY_RANGES.values())).T
    mid, half = (lo + hi) / 2, (hi - lo) / 2 * spread
    geometry = rng.uniform(mid - half, mid + half, (num_identities, len(lo)))
    tone = rng.uniform(0.65 - 0.3 * spread, 0.65 + 0.3 * spread, (num_identities, 1))
    skin = np.clip(
        tone * np.array([1.0, 0.78, 0.62]) + rng.normal(0, 0.04, (num_identities, 3)), 0, 1
    )
    # Natural hair: black, browns, auburn, blond, grey, with a little jitter.
    palette = np.array(
        [
            [0.05, 0.04, 0.03],
            [0.25, 0.15, 0.08],
            [0.45, 0.28, 0.15],
            [0.55, 0.25, 0.12],
            [0.85, 0.72, 0.45],
            [0.6, 0.6, 0.6],
        ]
    )
    hair = palette[rng.integers(0, len(palette), num_identities)]
    hair = np.clip(hair + rng.normal(0, 0.03, (num_identities, 3)), 0, 1)
    iris = palette[rng.integers(0, 4, num_identities)] + rng.uniform(0, 0.2, (num_identities, 3))
    return FaceIdentities(geometry, skin, hair, iris)


def _canonical_landmarks(g: np.ndarray) -> np.ndarray:
    """``[N, 5, 2]`` landmarks in the 112 frame from geometry rows ``[N, 13]``."""
    half_eye, half_mouth = g[:, 0] / 2, g[:, 6] / 2
    x = np.stack(
        [
            56 - half_eye,
            56 + half_eye,
            np.full_like(half_eye, 56.0),
            56 - half_mouth,
            56 + half_mouth,
        ],
        1,
    )
    y = np.stack([g[:, 1], g[:, 1], g[:, 3], g[:, 5], g[:, 5]], 1)
    return np.stack([x, y], -1)


def _soft(r: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Anti-aliased inside-mask of a normalised radius ``r`` (inside for ``r < 1``)."""
    return 1 / (1 + np.exp(np.clip((r - 1) / width, -30, 30)))


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return canvas * (1 - mask[..., None]) + mask[..., None] * colour[:, None, None, :]


def _render(u, v, g, skin, hair, iris, px):
    """Paints faces at canonical coordinates ``(u, v) [N, S, S]`` (``px``: one pixel)."""
    n = u.shape[0]
    e = lambda i: g[:, i, None, None]  # noqa: E731
    w = px[:, None, None] * 0.7
    canvas = np.zeros(u.shape + (3,))
    # Hair: a wider ellipse behind the head, cut below the ears.
    hr = np.hypot((u - 56) / (e(8) * e(11) + 4), (v - 58) / (e(9) + 6))
    hair_mask = _soft(hr, w / 40) * (v < 75)
    canvas = _paint(canvas, hair_mask, hair)
    face = np.hypot((u - 56) / e(8), (v - 66) / e(9))
    coverage = np.maximum(hair_mask, _soft(face, w / 40))
    canvas = _paint(canvas, _soft(face, w / 40), skin)
    # Hairline: hair again above a per-identity height inside the head.
    canvas = _paint(
        canvas, _soft(face, w / 40) * _soft((v - 10) / (e(10) - 10 + 1e-3), w / 20), hair
    )
    for side in (-1, 1):
        cx = 56 + side * e(0) / 2
        eye = np.hypot((u - cx) / (e(2) * 1.6), (v - e(1)) / e(2) * e(13))
        canvas = _paint(canvas, _soft(eye, w / 5), np.full((n, 3), 0.95))
        pupil = np.hypot(u - cx, v - e(1)) / (e(2) * 0.7)
        canvas = _paint(canvas, _soft(pupil, w / 3), iris)
        brow = np.hypot((u - cx) / (e(2) * 2.0), (v - e(1) + 2.2 * e(2) + e(14)) / e(12))
        canvas = _paint(canvas, _soft(brow, w / 3), hair * 0.6)
    nose = np.hypot(
        (u - 56) / (e(4) * (0.3 + 0.7 * np.clip((v - e(1)) / (e(3) - e(1)), 0, 1)) + 1e-3),
        (v - (e(1) + e(3)) / 2) / ((e(3) - e(1)) / 2 + 1),
    )
    canvas = _paint(canvas, 0.5 * _soft(nose, w / 4), skin * 0.75)
    nostril = np.hypot(u - 56, v - e(3)) / 1.8
    canvas = _paint(canvas, _soft(nostril, w / 2), skin * 0.45)
    mouth = np.hypot(
        (u - 56) / (e(6) / 2), (v - e(5) - e(15) * ((u - 56) / (e(6) / 2)) ** 2) / e(7)
    )
    lips = np.stack([np.full(n, 0.75), np.full(n, 0.25), np.full(n, 0.3)], 1) * skin
    return _paint(canvas, _soft(mouth, w / 5), lips), coverage


def _nuisance_geometry(rng, labels, ids, size, max_rotation):
    """Per-image similarity (canonical -> image) and expression-jittered geometry."""
    n = len(labels)
    g = ids.geometry[labels].copy()
    g[:, 6] *= rng.uniform(0.9, 1.1, n)  # mouth width: expression
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation, n))
    scale = size / 112 * rng.uniform(0.8, 1.05, n)
    shift = size / 2 + rng.uniform(-0.08, 0.08, (n, 2)) * size
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    a = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [N, 2, 2]
    t = shift - np.einsum("nij,j->ni", a, np.array([56.0, 68.0]))
    extra = np.stack(
        [
            rng.uniform(0.8, 1.3, n),  # eye openness
            rng.uniform(-1.0, 1.0, n),  # brow raise
            rng.uniform(-0.15, 0.25, n) * g[:, 7],
        ],
        1,
    )  # smile
    return np.concatenate([g, extra], 1), a, t, scale


@export("data.generate_faces")
def generate_faces(
    identities: FaceIdentities,
    labels: np.ndarray,
    *,
    size: int = 40,
    seed: int = 0,
    max_rotation: float = 25.0,
    chunk: int = 512,
) -> FaceImages:
    """Renders one image per entry of ``labels`` (identity indices) with its 5 landmarks.

    Args:
      identities: from ``sample_identities``.
      labels: ``[N]`` identity index of each image.
      size: image side ``S``.
      seed: seed of the per-image nuisances.
      max_rotation: in-plane rotations are uniform in ``[-max_rotation, max_rotation]``
        degrees.
      chunk: images rendered at once (memory).

    Returns:
      ``FaceImages``: images ``[N, S, S, 3]``, landmarks ``[N, 5, 2]``, labels ``[N]``.

    Examples:
      >>> from jaxvision import data
      >>> ids = data.sample_identities(3)
      >>> faces = data.generate_faces(ids, [0, 1, 2, 2], size=32)
      >>> faces.images.shape, faces.landmarks.shape, faces.labels.tolist()
      ((4, 32, 32, 3), (4, 5, 2), [0, 1, 2, 2])
    """
    labels = np.asarray(labels, np.int32)
    rng = np.random.default_rng(seed)
    g, a, t, scale = _nuisance_geometry(rng, labels, identities, size, max_rotation)
    landmarks = np.einsum("nij,npj->npi", a, _canonical_landmarks(g)) + t[:, None, :]
    images = np.empty((len(labels), size, size, 3), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    inv = np.linalg.inv(a)
    for lo in range(0, len(labels), chunk):
        sl = slice(lo, lo + chunk)
        dx, dy = xs[None] - t[sl, 0, None, None], ys[None] - t[sl, 1, None, None]
        u = inv[sl, 0, 0, None, None] * dx + inv[sl, 0, 1, None, None] * dy
        v = inv[sl, 1, 0, None, None] * dx + inv[sl, 1, 1, None, None] * dy
        lab = labels[sl]
        face, coverage = _render(
            u,
            v,
            g[sl],
            identities.skin[lab],
            identities.hair[lab],
            identities.iris[lab],
            1 / scale[sl],
        )
        images[sl] = _nuisances(rng, face, coverage, size)
    return FaceImages(images, landmarks.astype(np.float32), labels)


def _nuisances(
    rng: np.random.Generator, face: np.ndarray, coverage: np.ndarray, size: int
) -> np.ndarray:
    """Background, lighting (gain and a linear gradient), blur and noise."""
    n = face.shape[0]
    background = rng.uniform(0, 1, (n, 1, 1, 3))
    img = face + (1 - coverage[..., None]) * background
    ys, xs = np.mgrid[0:size, 0:size] / size - 0.5
    direction = rng.normal(0, 0.4, (n, 2))
    light = (
        rng.uniform(0.7, 1.2, (n, 1, 1))
        + direction[:, 0, None, None] * xs[None]
        + direction[:, 1, None, None] * ys[None]
    )
    # White balance: a per-image colour cast, so colour alone is an unreliable cue.
    img = img * light[..., None] * rng.uniform(0.85, 1.15, (n, 1, 1, 3))
    sigma = rng.uniform(0, 1.3, n)
    for i in range(n):
        if sigma[i] > 0.3:
            img[i] = ndimage.gaussian_filter(img[i], (sigma[i], sigma[i], 0))
    img = img + rng.normal(0, 0.04, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


@export("data.face_pairs")
def face_pairs(
    labels: np.ndarray, *, num_folds: int = 10, per_fold: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """LFW-style pairs over images of ``labels``: per fold ``per_fold`` same, then different.

    Args:
      labels: ``[N]`` identity of each image (each identity needs two images or more to
        give same pairs).
      num_folds, per_fold: LFW's 10 folds of 300 + 300 pairs by default.
      seed: pair sampling seed.

    Returns:
      ``(pairs [num_folds * 2 * per_fold, 2] image indices, same [.] bool)``, fold by fold
      in file order as ``pairs.txt`` (``metrics.lfw_protocol`` folds them the same way).
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    by_id = {k: np.flatnonzero(labels == k) for k in np.unique(labels)}
    multi = [k for k, v in by_id.items() if len(v) >= 2]
    if not multi or len(by_id) < 2:
        raise ValueError("`labels` needs an identity with two images and two identities")
    keys = np.array(list(by_id))
    pairs, same = [], []
    for _ in range(num_folds):
        for _ in range(per_fold):
            i, j = rng.choice(by_id[multi[rng.integers(len(multi))]], 2, replace=False)
            pairs.append((i, j))
            same.append(True)
        for _ in range(per_fold):
            a, b = rng.choice(keys, 2, replace=False)
            pairs.append((rng.choice(by_id[a]), rng.choice(by_id[b])))
            same.append(False)
    return np.asarray(pairs, np.int64), np.asarray(same, bool)
