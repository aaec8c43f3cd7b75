"""align_faces: the ArcFace template round trip and insightface's norm_crop pipeline."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.face import alignment
from jaxvision._src.geometry import affine

cv2 = pytest.importorskip("cv2")
transform = pytest.importorskip("skimage.transform")


def _random_faces(rng: np.random.Generator, n: int) -> np.ndarray:
    """Template landmarks moved by random similarities into a 160 x 200 image."""
    out = []
    for _ in range(n):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.7, 1.5)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        out.append((alignment.ARCFACE_TEMPLATE - 56) @ rot.T + rng.uniform(70, 100, 2))
    return np.stack(out)


def test_template_round_trip_exact():
    rng = np.random.default_rng(0)
    landmarks = _random_faces(rng, 6)
    with jax.enable_x64(True):
        _, m = alignment.align_faces(np.zeros((160, 200, 1)), landmarks)
        back = affine.apply_affine(landmarks, m)
        np.testing.assert_allclose(
            np.asarray(back), np.broadcast_to(alignment.ARCFACE_TEMPLATE, back.shape), atol=1e-6
        )
        # ... and the inverse map puts the template back onto the landmarks.
        there = affine.apply_affine(alignment.ARCFACE_TEMPLATE, affine.invert_affine(m))
        np.testing.assert_allclose(np.asarray(there), landmarks, atol=1e-6)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_equals_insightface_norm_crop_pipeline():
    """skimage SimilarityTransform + cv2.warpAffine, as insightface's face_align.norm_crop."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:160, 0:200]
    image = np.stack([np.sin(xx / 9.0) * np.cos(yy / 7.0), xx / 200.0, yy / 160.0], -1)
    image = image.astype(np.float32)
    landmarks = _random_faces(rng, 3)
    crops, mats = jax.jit(alignment.align_faces)(image, landmarks)
    assert crops.shape == (3, 112, 112, 3)
    for crop, mat, lm in zip(crops, mats, landmarks, strict=True):
        tform = transform.SimilarityTransform()
        tform.estimate(lm, alignment.ARCFACE_TEMPLATE)  # insightface's call
        np.testing.assert_allclose(np.asarray(mat), tform.params[:2], rtol=1e-4, atol=1e-3)
        want = cv2.warpAffine(image, tform.params[:2], (112, 112), borderValue=0.0)
        # OpenCV rounds positions to 1/32 px; the image's gradient is below 0.2 per pixel.
        np.testing.assert_allclose(np.asarray(crop), want, atol=0.2 / 32 + 1e-4)


def test_sizes_vmap_and_errors():
    np.testing.assert_allclose(alignment.arcface_template(112), alignment.ARCFACE_TEMPLATE)
    t128 = alignment.arcface_template(128)
    np.testing.assert_allclose(t128[:, 0], alignment.ARCFACE_TEMPLATE[:, 0] + 8.0, rtol=1e-6)
    images = np.random.default_rng(2).uniform(size=(2, 40, 40, 1)).astype(np.float32)
    lms = _random_faces(np.random.default_rng(3), 2) * 0.25
    align = jax.jit(functools.partial(alignment.align_faces, size=28))
    batched = align(images, lms)[0]
    mapped = jax.vmap(align)(images, lms)[0]
    assert batched.shape == (2, 28, 28, 1)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(mapped), rtol=1e-6, atol=1e-6)
    grad = jax.jit(jax.grad(lambda lm: jnp.sum(align(images, lm)[0])))(jnp.asarray(lms))
    assert np.isfinite(np.asarray(grad)).all()
    with pytest.raises(ValueError, match=r"`landmarks` must be \[\.\.\., 5, 2\]"):
        alignment.align_faces(images, np.zeros((2, 68, 2)))
    np.testing.assert_allclose(alignment.arcface_template(56), alignment.ARCFACE_TEMPLATE / 2)
    with pytest.raises(ValueError, match="`size`"):
        alignment.arcface_template(0)
