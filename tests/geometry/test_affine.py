"""warp_affine / invert_affine / apply_affine against OpenCV and scipy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.geometry import affine

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")


def _grid_inverse(rng: np.random.Generator, size: int) -> np.ndarray:
    """A destination -> source map whose entries lie on OpenCV's 1/32-pixel grid.

    cv2.warpAffine rounds every sampling position to 1/32 pixel (INTER_BITS = 5); with the
    inverse map's entries on that grid the positions of integer pixels are exact, so OpenCV
    and exact bilinear sampling agree to rounding instead of to the quantisation error.
    """
    angle = rng.uniform(-np.pi, np.pi)
    scale = rng.uniform(0.6, 1.6)
    a = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a += rng.uniform(-0.2, 0.2, (2, 2))  # a general affine map, shear included
    t = rng.uniform(-0.3 * size, 1.3 * size, 2)  # some samples fall outside the image
    return np.round(np.concatenate([a, t[:, None]], axis=1) * 32) / 32


@pytest.mark.parametrize("seed", range(4))
def test_warp_affine_equals_opencv(seed):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 1, (23, 31, 3)).astype(np.float32)
    inverse = _grid_inverse(rng, 25)
    forward = cv2.invertAffineTransform(inverse)
    border = float(rng.uniform(0, 1)) if seed % 2 else 0.0
    want = cv2.warpAffine(
        image, forward, (29, 19), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(border,) * 3,
    )
    got = affine.warp_affine(image, forward, (19, 29), border_value=border)
    assert got.shape == (19, 29, 3)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    # OpenCV's WARP_INVERSE_MAP is inverse=True.
    want_inv = cv2.warpAffine(
        image, inverse, (29, 19), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(border,) * 3,
    )
    got_inv = affine.warp_affine(image, inverse, (19, 29), inverse=True, border_value=border)
    np.testing.assert_allclose(np.asarray(got_inv), want_inv, rtol=1e-4, atol=1e-4)


def test_warp_affine_general_matrix_equals_exact_bilinear():
    """Off OpenCV's 1/32 grid: scipy's order-1 spline with grid-constant is exact bilinear."""
    rng = np.random.default_rng(7)
    image = rng.uniform(0, 1, (17, 13, 1))
    forward = np.array([[0.93, -0.41, 3.7], [0.37, 1.08, -2.3]])
    inverse = cv2.invertAffineTransform(forward)
    rows, cols = np.mgrid[0:15, 0:18]
    xs = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    ys = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    want = ndimage.map_coordinates(image[..., 0], [ys, xs], order=1, mode="grid-constant")
    got = affine.warp_affine(image.astype(np.float32), forward, (15, 18))[..., 0]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    # ... and OpenCV within its quantisation (1/64 px of a gradient of at most 1 per px).
    opencv = cv2.warpAffine(image[..., 0].astype(np.float32), forward, (18, 15))
    np.testing.assert_allclose(np.asarray(got), opencv, atol=1 / 32)


def test_warp_affine_batched_jit_vmap():
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 1, (2, 3, 12, 10, 2)).astype(np.float32)
    mats = np.stack([cv2.invertAffineTransform(_grid_inverse(rng, 10)) for _ in range(3)])
    warp = jax.jit(functools.partial(affine.warp_affine, out_size=(9, 11)))
    got = warp(images, mats)  # [2, 3] images with [3] matrices broadcast
    assert got.shape == (2, 3, 9, 11, 2)
    for i in range(2):
        for j in range(3):
            want = cv2.warpAffine(images[i, j], mats[j], (11, 9))
            np.testing.assert_allclose(np.asarray(got[i, j]), want, rtol=1e-4, atol=1e-4)
    vmapped = jax.vmap(lambda x, m: affine.warp_affine(x, m, (9, 11)))(images[0], mats)
    np.testing.assert_allclose(np.asarray(vmapped), np.asarray(got[0]), rtol=1e-6, atol=1e-6)


def test_warp_affine_identity_and_dtypes():
    image = np.arange(24, dtype=np.uint8).reshape(4, 6, 1)
    eye = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    got = affine.warp_affine(image, eye, (4, 6))
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), image.astype(np.float32))
    far = affine.warp_affine(image, [[1.0, 0, 1e12], [0, 1.0, -1e12]], 3, border_value=5.0)
    np.testing.assert_array_equal(np.asarray(far), 5.0)


def test_warp_affine_gradients_finite_and_match_finite_differences():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        image = jnp.asarray(rng.uniform(0, 1, (9, 8, 2)))
        forward = jnp.array([[0.9, -0.3, 1.3], [0.25, 1.1, -0.7]])

        @jax.jit
        def loss(img, m):
            return jnp.sum(affine.warp_affine(img, m, (10, 9)) ** 2)

        g_img, g_mat = jax.grad(loss, argnums=(0, 1))(image, forward)
        assert np.isfinite(np.asarray(g_img)).all() and np.isfinite(np.asarray(g_mat)).all()
        eps = 1e-6
        for idx in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
            step = jnp.zeros((2, 3)).at[idx].set(eps)
            fd = (loss(image, forward + step) - loss(image, forward - step)) / (2 * eps)
            np.testing.assert_allclose(g_mat[idx], fd, rtol=1e-4, atol=1e-6)
        # The warp is linear in the image: its gradient is the transposed warp of 2 * out.
        direction = jnp.asarray(rng.normal(size=image.shape))
        fd = (loss(image + eps * direction, forward) - loss(image - eps * direction, forward))
        np.testing.assert_allclose(jnp.vdot(g_img, direction), fd / (2 * eps), rtol=1e-5)
    singular = jax.grad(lambda m: jnp.sum(affine.warp_affine(np.ones((4, 4, 1)), m, 3)))(
        jnp.zeros((2, 3))
    )
    assert np.isfinite(np.asarray(singular)).all()


def test_invert_and_apply_affine_equal_opencv():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(2, 3))
    np.testing.assert_allclose(
        np.asarray(affine.invert_affine(m.astype(np.float32))),
        cv2.invertAffineTransform(m), rtol=1e-4, atol=1e-5,
    )
    np.testing.assert_array_equal(np.asarray(affine.invert_affine(np.zeros((2, 3)))), 0.0)
    pts = rng.normal(size=(7, 2)).astype(np.float32)
    want = cv2.transform(pts[:, None, :], m)[:, 0]
    np.testing.assert_allclose(
        np.asarray(affine.apply_affine(pts, m)), want, rtol=1e-5, atol=1e-5
    )


def test_bad_input_is_named():
    img = np.zeros((4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="`matrix` must be"):
        affine.warp_affine(img, np.zeros((3, 3)), 4)
    with pytest.raises(ValueError, match="`images` must be"):
        affine.warp_affine(np.zeros((4, 4)), np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="`out_size`"):
        affine.warp_affine(img, np.zeros((2, 3)), (4, 0))
    with pytest.raises(ValueError, match="do not broadcast"):
        affine.warp_affine(np.zeros((2, 4, 4, 1)), np.zeros((3, 2, 3)), 4)
    with pytest.raises(ValueError, match="`points` must be"):
        affine.apply_affine(np.zeros((3, 3)), np.zeros((2, 3)))
