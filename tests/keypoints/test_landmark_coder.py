"""encode_landmarks / decode_landmarks: float64 RetinaFace formula, exact round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes, keypoints
from tests.boxes import face_reference as ref


def _problem(seed, n=300):
    rng = np.random.default_rng(seed)
    anchors = np.asarray(boxes.grid_anchors(640), np.float64)[rng.choice(16800, n)]
    ax, ay, aw, ah = ref.centre_form(anchors)
    pts = np.stack(
        [
            ax[:, None] + rng.uniform(-1, 1, (n, 5)) * aw[:, None],
            ay[:, None] + rng.uniform(-1, 1, (n, 5)) * ah[:, None],
        ],
        -1,
    )
    return pts.astype(np.float32), anchors.astype(np.float32)


def test_encode_against_float64():
    pts, anchors = _problem(0)
    got = keypoints.encode_landmarks(pts, anchors)
    want = ref.encode_landmarks(pts.astype(np.float64), anchors.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_round_trip_exact_to_1e5():
    pts, anchors = _problem(1)
    back = keypoints.decode_landmarks(keypoints.encode_landmarks(pts, anchors), anchors)
    np.testing.assert_allclose(back, pts, rtol=1e-5, atol=1e-5 * 640)
    d = np.random.default_rng(2).normal(size=pts.shape).astype(np.float32)
    again = keypoints.encode_landmarks(keypoints.decode_landmarks(d, anchors), anchors)
    np.testing.assert_allclose(again, d, rtol=1e-5, atol=1e-4)


def test_other_counts_jit_and_vmap():
    pts, anchors = _problem(3, n=8)
    three = pts[:, :3]
    got = jax.jit(lambda p, a: keypoints.encode_landmarks(p, a, num_landmarks=3))(three, anchors)
    np.testing.assert_allclose(got, ref.encode_landmarks(three, anchors), rtol=1e-5, atol=1e-4)
    batched = jax.vmap(keypoints.decode_landmarks, in_axes=(0, None))(
        jnp.stack([pts, pts]), anchors
    )
    np.testing.assert_allclose(batched[0], keypoints.decode_landmarks(pts, anchors), rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 5, 3), (5, 2, 5), (10,)])
def test_landmarks_not_5_by_2_named(shape):
    anchors = jnp.ones((4, 4))
    with pytest.raises(ValueError, match=r"`landmarks` must have shape \[\.\.\., 5, 2\]"):
        keypoints.encode_landmarks(jnp.zeros(shape), anchors)
    with pytest.raises(ValueError, match=r"`deltas` must have shape \[\.\.\., 5, 2\]"):
        keypoints.decode_landmarks(jnp.zeros(shape), anchors)


def test_bad_anchors_and_variance():
    with pytest.raises(ValueError, match="broadcastable"):
        keypoints.encode_landmarks(jnp.zeros((3, 5, 2)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="variance"):
        keypoints.decode_landmarks(jnp.zeros((3, 5, 2)), jnp.ones((3, 4)), variance=-1.0)
