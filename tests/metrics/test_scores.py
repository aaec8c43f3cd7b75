"""Scores against hand-checked cases and a float64 NumPy transcription of FCN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import metrics

from .reference import fcn_scores, reference_counts

PER_CLASS = ["class_accuracy", "class_iou", "class_dice", "class_precision"]
MEANS = ["pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou", "mean_dice"]


def _cm(t, p, c, **kw):
    return metrics.confusion_from_labels(jnp.asarray(p), jnp.asarray(t), c, **kw)


def test_hand_case_c3():
    cm = _cm([0, 0, 1, 1], [0, 2, 1, 1], 3)
    assert metrics.pixel_accuracy(cm) == pytest.approx(0.75)
    assert metrics.mean_accuracy(cm) == pytest.approx(0.75)  # FCN / mmseg
    assert metrics.mean_accuracy(cm, absent=0.0) == pytest.approx(0.5)  # torchmetrics
    np.testing.assert_allclose(metrics.class_iou(cm), [0.5, 1.0, 0.0], rtol=1e-6)
    assert metrics.mean_iou(cm) == pytest.approx(0.5)
    assert metrics.frequency_weighted_iou(cm) == pytest.approx(0.75)
    np.testing.assert_allclose(metrics.class_dice(cm), [2 / 3, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(metrics.class_precision(cm), [1.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(metrics.class_accuracy(cm), [0.5, 1.0, np.nan], rtol=1e-6)


def test_hand_case_c4_absent_class_is_excluded():
    cm = _cm([0, 0, 1, 1], [0, 2, 1, 1], 4)
    assert np.isnan(metrics.class_iou(cm)[3])
    assert metrics.mean_iou(cm) == pytest.approx(0.5)
    assert metrics.mean_iou(cm, absent=0.0) == pytest.approx(0.5)
    assert metrics.class_iou(cm, absent=0.0)[3] == 0.0
    assert metrics.mean_accuracy(cm, absent=0.0) == pytest.approx(0.5)


def test_hand_case_dataset_versus_per_image():
    t = [[0, 0, 0, 0], [1, 1, 1, 1]]
    p = [[0, 0, 0, 0], [0, 1, 1, 1]]
    assert metrics.mean_iou(_cm(t, p, 2)) == pytest.approx(0.775)
    np.testing.assert_allclose(
        metrics.mean_iou(_cm(t, p, 2, per_image=True)), [1.0, 0.375], rtol=1e-6
    )


def test_square_matrix_is_accepted():
    cm = np.array([[1, 0, 1], [0, 2, 0], [0, 0, 0]])
    assert metrics.mean_iou(cm) == pytest.approx(0.5)
    assert metrics.pixel_accuracy(cm) == pytest.approx(0.75)


def test_random_label_maps_match_float64_fcn_reference():
    rng = np.random.default_rng(0)
    c = 6
    # 16 images, one per row; some classes made rare or absent, a few missed predictions.
    t = rng.integers(0, c, size=(16, 40, 30))
    p = np.where(rng.random(t.shape) < 0.6, t, rng.integers(0, c + 1, size=t.shape))
    t[:8][t[:8] == 4] = 255
    p[:4][p[:4] == 5] = 0
    t[:4][t[:4] == 5] = 0
    per = _cm(t, p, c, ignore_index=255, per_image=True)
    total = per.sum(0)
    fn = jax.jit(lambda m: metrics.segmentation_scores(m))
    got_total, got_per = fn(total), fn(per)
    want_total = fcn_scores(*reference_counts(t, p, c, 255))
    for name in PER_CLASS + MEANS:
        np.testing.assert_allclose(got_total[name], want_total[name], rtol=2e-6, err_msg=name)
    for i in range(16):
        want = fcn_scores(*reference_counts(t[i], p[i], c, 255))
        for name in PER_CLASS + MEANS:
            np.testing.assert_allclose(got_per[name][i], want[name], rtol=2e-6, err_msg=name)


def test_fbeta_matches_precision_recall_formula():
    rng = np.random.default_rng(3)
    t = rng.integers(0, 4, size=500)
    p = np.where(rng.random(500) < 0.5, t, rng.integers(0, 4, size=500))
    cm = _cm(t, p, 4)
    pr = np.asarray(metrics.class_precision(cm), np.float64)
    rc = np.asarray(metrics.class_accuracy(cm), np.float64)
    for beta in [0.5, 1.0, 2.0]:
        want = (1 + beta**2) * pr * rc / (beta**2 * pr + rc)
        np.testing.assert_allclose(metrics.class_fbeta(cm, beta=beta), want, rtol=1e-5)
    np.testing.assert_allclose(metrics.class_fbeta(cm, beta=1.0), metrics.class_dice(cm), rtol=1e-6)


def test_scores_are_finite_or_nan_and_jit_with_absent_policies():
    cm = jnp.zeros((3, 4), jnp.int32).at[0, 0].set(5)
    got = jax.jit(lambda m: metrics.class_iou(m, absent=0.0))(cm)
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0])
    assert metrics.mean_iou(cm, absent=1.0) == 1.0
    np.testing.assert_array_equal(metrics.class_dice(cm, absent=-1.0), [1.0, -1.0, -1.0])


def test_host_int64_counts_beyond_int32_are_read_exactly():
    big = np.array([[3 * 2**31, 2**31], [0, 2**33]], np.int64)
    assert metrics.pixel_accuracy(big) == pytest.approx(2**31 * 7 / (2**31 * 8))
    np.testing.assert_allclose(metrics.class_iou(big), [0.75, 0.8], rtol=1e-6)


@pytest.mark.parametrize(
    "cm, error, match",
    [
        (np.zeros(3), ValueError, r"\[\.\.\., C, C\]"),
        (np.zeros((3, 5)), ValueError, r"\[\.\.\., C, C \+ 1\]"),
        (np.zeros((2, 2), bool), TypeError, "counts"),
    ],
)
def test_bad_matrices_are_refused(cm, error, match):
    with pytest.raises(error, match=match):
        metrics.mean_iou(cm)


def test_bad_options_are_refused():
    cm = np.eye(2)
    with pytest.raises(TypeError, match="absent"):
        metrics.class_iou(cm, absent="zero")
    with pytest.raises(ValueError, match="beta"):
        metrics.class_fbeta(cm, beta=0.0)
