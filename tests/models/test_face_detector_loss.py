"""face_detector_loss against a float64 NumPy transcription; degenerate targets finite."""

import jax
import numpy as np
import pytest

from jaxvision import boxes, models
from tests.boxes import face_reference as ref

SIZES = ((16, 24), (32, 48), (64, 96))
ANCHORS = np.asarray(boxes.grid_anchors(64, sizes=SIZES), np.float32)
A = ANCHORS.shape[0]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _huber(d):
    a = np.abs(d)
    return np.where(a <= 1, 0.5 * d**2, a - 0.5)


def _reference(outputs, targets, kind):
    """The documented loss, image by image, in float64."""
    logits, deltas, lm_deltas = (np.asarray(x, np.float64) for x in outputs)
    gt, lms, valid, lm_valid = (np.asarray(x) for x in targets)
    a64 = ANCHORS.astype(np.float64)
    cls = box = lm = 0.0
    n_pos = n_lm = 0
    for i in range(logits.shape[0]):
        labels, matched = ref.assign(a64, gt[i].astype(np.float64), valid[i])
        pos, neg = labels == 1, labels == 0
        y = pos.astype(np.float64)
        if kind == "focal":
            p = _sigmoid(logits[i])
            p_t = p * y + (1 - p) * (1 - y)
            alpha = 0.25 * y + 0.75 * (1 - y)
            per = alpha * (1 - p_t) ** 2 * _bce(logits[i], y)
            cls += per[pos | neg].sum()
        else:
            per = _bce(logits[i], y)
            quota = 7 * max(pos.sum(), 1)
            hardest = np.argsort(-np.where(neg, per, -np.inf), kind="stable")[:quota]
            kept = np.zeros(A, bool)
            kept[hardest] = True
            cls += per[pos].sum() + per[kept & neg].sum()
        for a in np.flatnonzero(pos):
            g = matched[a]
            box += _huber(deltas[i, a] - ref.encode_boxes(gt[i, g], a64[a])).sum()
            if lm_valid[i, g]:
                target = ref.encode_landmarks(lms[i, g], a64[a])
                lm += _huber(lm_deltas[i, a] - target).sum()
                n_lm += 1
        n_pos += pos.sum()
    d = max(n_pos, 1)
    return cls / d + 2.0 * box / d + lm / max(n_lm, 1), n_pos


def _targets(rng, batch, g):
    side = rng.uniform(10, 50, (batch, g, 1))
    centre = rng.uniform(8, 56, (batch, g, 2))
    gt = np.concatenate([centre - side / 2, centre + side / 2], -1)
    lms = centre[..., None, :] + rng.uniform(-0.4, 0.4, (batch, g, 5, 2)) * side[..., None]
    valid = rng.uniform(size=(batch, g)) < 0.8
    lm_valid = rng.uniform(size=(batch, g)) < 0.7
    return models.FaceTargets(gt.astype(np.float32), lms.astype(np.float32), valid, lm_valid)


def _outputs(rng, batch):
    return models.FaceDetectorOutput(
        rng.normal(-2, 2, (batch, A)).astype(np.float32),
        rng.normal(0, 1, (batch, A, 4)).astype(np.float32),
        rng.normal(0, 1, (batch, A, 5, 2)).astype(np.float32),
    )


@pytest.mark.parametrize("kind", ["focal", "ohem"])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_float64(kind, seed):
    rng = np.random.default_rng(seed)
    outputs, targets = _outputs(rng, 3), _targets(rng, 3, 4)
    got = models.face_detector_loss(outputs, targets, ANCHORS, classification=kind)
    want, n_pos = _reference(outputs, targets, kind)
    assert float(got.num_positive) == n_pos > 0
    np.testing.assert_allclose(float(got.total), want, rtol=2e-5)


@pytest.mark.parametrize("kind", ["focal", "ohem"])
def test_no_faces_and_faces_smaller_than_every_anchor(kind):
    rng = np.random.default_rng(2)
    outputs = _outputs(rng, 2)
    # Three slots each (the third padding), so that "padding only" and "tiny faces" share
    # one compile.
    tiny = np.array([[[30, 30, 33, 33], [5, 5, 8, 8], [0, 0, 0, 0]]] * 2, np.float32)
    tiny_valid = np.array([[True, True, False]] * 2)
    cases = {
        "no faces": models.FaceTargets(
            np.zeros((2, 0, 4)),
            np.zeros((2, 0, 5, 2)),
            np.zeros((2, 0), bool),
            np.zeros((2, 0), bool),
        ),
        "padding only": models.FaceTargets(
            np.zeros((2, 3, 4)),
            np.zeros((2, 3, 5, 2)),
            np.zeros((2, 3), bool),
            np.zeros((2, 3), bool),
        ),
        "tiny faces": models.FaceTargets(
            tiny, np.full((2, 3, 5, 2), 31.0), tiny_valid, tiny_valid
        ),
    }

    def total(o, t):
        return models.face_detector_loss(o, t, ANCHORS, classification=kind).total

    value_and_grad = jax.jit(jax.value_and_grad(total))
    for name, targets in cases.items():
        value, grads = value_and_grad(outputs, targets)
        assert np.isfinite(float(value)) and float(value) > 0, name
        assert all(np.isfinite(np.asarray(g)).all() for g in grads), name
        want, n_pos = _reference(outputs, targets, kind)
        assert n_pos == 0, name
        np.testing.assert_allclose(float(value), want, rtol=2e-5, err_msg=name)


def test_bad_input_named():
    rng = np.random.default_rng(3)
    outputs, targets = _outputs(rng, 2), _targets(rng, 2, 3)
    bad = targets._replace(landmarks=np.zeros((2, 3, 4, 2)))
    with pytest.raises(ValueError, match=r"`targets.landmarks` must have shape \[\.\.\., 5, 2\]"):
        models.face_detector_loss(outputs, bad, ANCHORS)
    bad = outputs._replace(landmark_deltas=np.zeros((2, A, 5, 3)))
    with pytest.raises(ValueError, match=r"`outputs.landmark_deltas` must have shape"):
        models.face_detector_loss(bad, targets, ANCHORS)
    with pytest.raises(ValueError, match="A=167"):
        models.face_detector_loss(outputs, targets, ANCHORS[:-1])
    with pytest.raises(ValueError, match="classification"):
        models.face_detector_loss(outputs, targets, ANCHORS, classification="softmax")
    with pytest.raises(ValueError, match="targets.valid"):
        models.face_detector_loss(outputs, targets._replace(valid=np.ones((2, 2), bool)), ANCHORS)
