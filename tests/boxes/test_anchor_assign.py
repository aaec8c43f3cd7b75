"""assign_anchors against a float64 NumPy transcription of the rule, and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes
from tests.boxes import face_reference as ref

ANCHORS = np.asarray(boxes.grid_anchors(128, sizes=((16, 24), (32, 48), (64, 96))), np.float64)


def _faces(rng, g):
    """Faces of 4..90 px, some with the same centre as a neighbour (shared best anchors)."""
    side = np.exp(rng.uniform(np.log(4), np.log(90), (g, 1))) * rng.uniform(0.8, 1.25, (g, 2))
    centre = rng.uniform(0, 128, (g, 2))
    if g > 1:
        centre[1] = centre[0] + rng.uniform(-2, 2, 2)
    return np.concatenate([centre - side / 2, centre + side / 2], -1)


@pytest.mark.parametrize("seed", range(6))
def test_against_float64_rule(seed):
    rng = np.random.default_rng(seed)
    batch, g = 3, 7
    gt = np.stack([_faces(rng, g) for _ in range(batch)]).astype(np.float32)
    valid = rng.uniform(size=(batch, g)) < 0.8
    pos, neg = (0.5, 0.4) if seed % 2 else (0.35, 0.35)
    out = jax.jit(
        lambda b, v: boxes.assign_anchors(ANCHORS, b, v, positive_iou=pos, negative_iou=neg)
    )(gt, valid)
    for i in range(batch):
        labels, matched = ref.assign(ANCHORS, gt[i].astype(np.float64), valid[i], pos, neg)
        np.testing.assert_array_equal(out.labels[i], labels)
        positive = labels == 1
        np.testing.assert_array_equal(np.asarray(out.matched[i])[positive], matched[positive])
        assert positive.sum() >= 1  # some face always claims an anchor in these cases


def test_hand_case_claims_and_ignores():
    anchors = jnp.array([[0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 40, 40], [100, 100, 110, 110]])
    gt = jnp.array([[1.0, 0, 11, 10], [0, 0, 30, 30], [200, 200, 202, 202], [0, 0, 0, 0]])
    out = boxes.assign_anchors(
        anchors, gt, jnp.array([True, True, True, False]), positive_iou=0.7, negative_iou=0.3
    )
    # Anchor 0: IoU 0.82 with box 0. Anchor 2: box 1's best anchor (IoU 0.5625, claimed even
    # though below 0.7). Box 2 overlaps nothing: unmatched. Anchor 3 overlaps nothing.
    np.testing.assert_array_equal(out.labels, [1, 0, 1, 0])
    np.testing.assert_array_equal(out.matched, [0, 1, 1, -1])
    np.testing.assert_allclose(out.max_iou, [9 / 11, 1 / 9, 0.5625, 0.0], rtol=1e-6)


def test_faces_smaller_than_every_anchor_and_no_faces():
    tiny = jnp.array([[[60.0, 60.0, 63.0, 63.0], [10.0, 10.0, 12.0, 12.0]]])
    out = boxes.assign_anchors(ANCHORS, tiny, jnp.ones((1, 2), bool))
    assert int(jnp.sum(out.labels == 1)) == 0
    assert int(jnp.sum(out.labels == 0)) == ANCHORS.shape[0]
    empty = boxes.assign_anchors(ANCHORS, jnp.zeros((2, 0, 4)), jnp.zeros((2, 0), bool))
    assert empty.labels.shape == (2, ANCHORS.shape[0]) and not np.any(empty.labels)
    assert np.all(np.asarray(empty.matched) == -1)


def test_bad_input_named():
    with pytest.raises(ValueError, match="`gt_valid` must have shape"):
        boxes.assign_anchors(ANCHORS, jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="`anchors` must have shape"):
        boxes.assign_anchors(ANCHORS[None], jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="negative_iou"):
        boxes.assign_anchors(ANCHORS, jnp.zeros((3, 4)), jnp.zeros(3, bool), negative_iou=0.5)
