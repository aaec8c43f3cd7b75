"""face_detector_postprocess against RetinaFace's per-image NumPy post-processing."""

import jax
import numpy as np
import pytest

from jaxvision import boxes, models
from tests.boxes import face_reference as ref

ANCHORS = np.asarray(boxes.grid_anchors(128), np.float32)
A = ANCHORS.shape[0]


def _numpy_postprocess(logits, deltas, lm_deltas, threshold, iou, top_k, keep):
    """Decode, threshold, sort, top-k, py_cpu_nms, keep: the reference order of steps."""
    a64 = ANCHORS.astype(np.float64)
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    b = ref.decode_boxes(deltas, a64)
    ax, ay, aw, ah = ref.centre_form(a64)
    lm = np.stack(
        [
            ax[:, None] + lm_deltas[..., 0] * 0.1 * aw[:, None],
            ay[:, None] + lm_deltas[..., 1] * 0.1 * ah[:, None],
        ],
        -1,
    )
    idx = np.flatnonzero(scores > threshold)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:top_k]
    kept = idx[ref.py_cpu_nms(b[idx], scores[idx], iou)][:keep]
    return b[kept], scores[kept], lm[kept]


def _outputs(seed, batch):
    rng = np.random.default_rng(seed)
    # A trained detector's picture: most anchors confidently background, a few clusters high.
    logits = rng.normal(-6, 1.5, (batch, A))
    hot = rng.choice(A, (batch, 60))
    np.put_along_axis(logits, hot, rng.normal(1, 1.5, (batch, 60)), axis=1)
    return models.FaceDetectorOutput(
        logits.astype(np.float32),
        rng.normal(0, 0.5, (batch, A, 4)).astype(np.float32),
        rng.normal(0, 1, (batch, A, 5, 2)).astype(np.float32),
    )


@pytest.mark.parametrize(
    "threshold, iou, top_k, keep", [(0.02, 0.4, 5000, 750), (0.3, 0.3, 40, 10)]
)
def test_against_numpy_per_image(threshold, iou, top_k, keep):
    outputs = _outputs(0, 3)
    # Under jit: one compile instead of one per eagerly dispatched primitive.
    det = jax.jit(
        lambda o: models.face_detector_postprocess(
            o,
            ANCHORS,
            score_threshold=threshold,
            iou_threshold=iou,
            pre_nms_top_k=top_k,
            max_detections=keep,
        )
    )(outputs)
    assert det.boxes.shape == (3, keep, 4) and det.landmarks.shape == (3, keep, 5, 2)
    for i in range(3):
        b, s, lm = _numpy_postprocess(
            *(np.asarray(x[i]) for x in outputs), threshold, iou, top_k, keep
        )
        n = int(det.count[i])
        assert n == len(s) > 0
        np.testing.assert_allclose(det.scores[i, :n], s, rtol=1e-5)
        np.testing.assert_allclose(det.boxes[i, :n], b, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(det.landmarks[i, :n], lm, rtol=1e-5, atol=1e-3)
        assert not np.any(np.asarray(det.scores[i, n:]))


def test_jit_fixed_size_and_nothing_found():
    outputs = _outputs(1, 2)
    outputs = outputs._replace(logits=np.full_like(outputs.logits, -20.0))
    fn = jax.jit(lambda o: models.face_detector_postprocess(o, ANCHORS, max_detections=5))
    det = fn(outputs)
    assert det.scores.shape == (2, 5)
    np.testing.assert_array_equal(det.count, [0, 0])


def test_bad_input_named():
    outputs = _outputs(2, 1)
    with pytest.raises(ValueError, match="A=100"):
        models.face_detector_postprocess(outputs, ANCHORS[:100])
    with pytest.raises(ValueError, match="outputs.landmark_deltas"):
        models.face_detector_postprocess(
            outputs._replace(landmark_deltas=np.zeros((1, A, 10))), ANCHORS
        )
    with pytest.raises(ValueError, match="max_detections"):
        models.face_detector_postprocess(outputs, ANCHORS, max_detections=0)
