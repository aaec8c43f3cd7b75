"""estimate_similarity against scikit-image's SimilarityTransform (Umeyama 1991)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.geometry import affine, similarity

transform = pytest.importorskip("skimage.transform")

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]]
)


def _skimage(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    if hasattr(transform.SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = transform.SimilarityTransform.from_estimate(src, dst)
        assert tform
    else:
        tform = transform.SimilarityTransform()
        assert tform.estimate(src, dst)
    return tform.params[:2]


@pytest.mark.parametrize("points", [2, 5, 17])
def test_equals_skimage_on_random_points(points):
    rng = np.random.default_rng(points)
    src = rng.uniform(-50, 150, (6, points, 2))
    dst = rng.uniform(-50, 150, (6, points, 2))
    got = similarity.estimate_similarity(src.astype(np.float32), dst.astype(np.float32))
    got = np.asarray(got)
    want = np.stack([_skimage(s, d) for s, d in zip(src, dst, strict=True)])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_weights_drop_points():
    rng = np.random.default_rng(0)
    src, dst = rng.normal(size=(9, 2)), rng.normal(size=(9, 2))
    keep = np.array([1, 1, 0, 1, 0, 1, 1, 0, 1.0])
    got = similarity.estimate_similarity(src, dst, weights=keep)
    want = _skimage(src[keep > 0], dst[keep > 0])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_anchor_alignment_check():
    """ANCHORS section 12: src = 2 R(30 deg) template + (300, 200) mapped back onto it."""
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    src = 2 * TEMPLATE @ np.array([[c, -s], [s, c]]).T + np.array([300.0, 200.0])
    want = [[0.433013, 0.25, -179.903811], [-0.25, 0.433013, -11.602540]]
    with jax.enable_x64(True):
        m = similarity.estimate_similarity(src, TEMPLATE)
        np.testing.assert_allclose(np.asarray(m), want, atol=1e-6)
        np.testing.assert_allclose(_skimage(src, TEMPLATE), want, atol=1e-6)
        # Round trip: the estimated map takes the landmarks exactly onto the template.
        np.testing.assert_allclose(np.asarray(affine.apply_affine(src, m)), TEMPLATE, atol=1e-6)
    m32 = similarity.estimate_similarity(src.astype(np.float32), TEMPLATE.astype(np.float32))
    np.testing.assert_allclose(np.asarray(m32), want, rtol=1e-5, atol=1e-4)


def test_jit_vmap_grad_and_degenerate():
    rng = np.random.default_rng(2)
    src = jnp.asarray(rng.normal(size=(4, 5, 2)), jnp.float32)
    dst = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    batched = jax.jit(similarity.estimate_similarity)(src, dst)
    looped = jax.vmap(similarity.estimate_similarity, in_axes=(0, None))(src, dst)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(looped), rtol=1e-6, atol=1e-6)
    grad = jax.grad(lambda s: jnp.sum(similarity.estimate_similarity(s, dst) ** 2))
    assert np.isfinite(np.asarray(grad(src))).all()
    same = jnp.ones((5, 2))  # all source points equal: scale 0, onto the mean of dst
    m = similarity.estimate_similarity(same, dst)
    np.testing.assert_allclose(np.asarray(m[:, :2]), 0.0)
    np.testing.assert_allclose(np.asarray(m[:, 2]), np.asarray(dst.mean(0)), rtol=1e-6)
    assert np.isfinite(np.asarray(grad(jnp.broadcast_to(same, (4, 5, 2))))).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="`src` must be"):
        similarity.estimate_similarity(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same number of points"):
        similarity.estimate_similarity(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="`weights` must be"):
        similarity.estimate_similarity(np.zeros((5, 2)), np.zeros((5, 2)), weights=np.ones(4))
