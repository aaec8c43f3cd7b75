"""Parity with torchmetrics: each jaxvision option against the setting that matches it."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import metrics

torch = pytest.importorskip("torch")
classification = pytest.importorskip("torchmetrics.classification")

pytestmark = pytest.mark.torch

C = 6


@pytest.fixture(scope="module")
def labels():
    rng = np.random.default_rng(0)
    t = rng.integers(0, C, size=(4, 24, 20))
    p = np.where(rng.random(t.shape) < 0.5, t, rng.integers(0, C, size=t.shape))
    t[t == 4] = 0  # class 4 only predicted
    p[p == 5] = 1
    t[t == 5] = 2  # class 5 occurs nowhere
    t[:, :3] = 255
    return t, p


def _torch(metric, t, p):
    return metric(torch.as_tensor(p), torch.as_tensor(t)).numpy()


@pytest.fixture(scope="module")
def cm(labels):
    t, p = labels
    return metrics.confusion_from_labels(jnp.asarray(p), jnp.asarray(t), C, ignore_index=255)


def test_confusion_matrix(labels, cm):
    t, p = labels
    want = _torch(classification.MulticlassConfusionMatrix(C, ignore_index=255), t, p)
    np.testing.assert_array_equal(np.asarray(cm)[:, :C], want)


@pytest.mark.parametrize(
    "average, ours",
    [
        ("none", lambda cm: metrics.class_iou(cm, absent=0.0)),
        ("macro", metrics.mean_iou),
        ("weighted", metrics.frequency_weighted_iou),
    ],
)
def test_jaccard_index(labels, cm, average, ours):
    t, p = labels
    jaccard = classification.MulticlassJaccardIndex(C, average=average, ignore_index=255)
    np.testing.assert_allclose(ours(cm), _torch(jaccard, t, p), rtol=1e-6)


@pytest.mark.parametrize(
    "average, ours",
    [
        ("micro", metrics.pixel_accuracy),
        ("macro", lambda cm: metrics.mean_accuracy(cm, absent=0.0)),
        ("none", lambda cm: metrics.class_accuracy(cm, absent=0.0)),
    ],
)
def test_accuracy(labels, cm, average, ours):
    t, p = labels
    accuracy = classification.MulticlassAccuracy(C, average=average, ignore_index=255)
    np.testing.assert_allclose(ours(cm), _torch(accuracy, t, p), rtol=1e-6)


def test_macro_accuracy_differs_from_fcn_only_by_the_absent_policy(labels, cm):
    t, p = labels
    tm = _torch(classification.MulticlassAccuracy(C, average="macro", ignore_index=255), t, p)
    assert not np.isclose(metrics.mean_accuracy(cm), tm)


@pytest.mark.parametrize(
    "cls, ours",
    [
        (classification.MulticlassF1Score, lambda cm: metrics.class_dice(cm, absent=0.0)),
        (classification.MulticlassPrecision, lambda cm: metrics.class_precision(cm, absent=0.0)),
        (classification.MulticlassRecall, lambda cm: metrics.class_accuracy(cm, absent=0.0)),
    ],
)
def test_per_class_f1_precision_recall(labels, cm, cls, ours):
    t, p = labels
    np.testing.assert_allclose(
        ours(cm), _torch(cls(C, average="none", ignore_index=255), t, p), rtol=1e-6
    )


def test_fbeta(labels, cm):
    t, p = labels
    fb = classification.MulticlassFBetaScore(2.0, C, average="none", ignore_index=255)
    np.testing.assert_allclose(
        metrics.class_fbeta(cm, beta=2.0, absent=0.0), _torch(fb, t, p), rtol=1e-6
    )


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("per_class", [False, True])
def test_segmentation_mean_iou_is_a_per_image_average(labels, per_class):
    segmentation = pytest.importorskip("torchmetrics.segmentation")
    t, p = labels
    t = np.where(t == 255, 0, t)  # MeanIoU has no ignore_index
    per_image = metrics.confusion_from_labels(jnp.asarray(p), jnp.asarray(t), C, per_image=True)
    iou = np.asarray(metrics.class_iou(per_image))  # [images, C], NaN where absent
    metric = segmentation.MeanIoU(C, per_class=per_class, input_format="index")
    want = _torch(metric, t, p)
    if per_class:  # mean over the images where each class occurs; torchmetrics: -1 if none
        got = np.nan_to_num(np.nanmean(iou, axis=0), nan=-1.0)
    else:  # mean over all (image, class) pairs where the class occurs
        got = np.nanmean(iou)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_macro_f1_is_mean_dice(labels, cm):
    t, p = labels
    f1 = classification.MulticlassF1Score(C, average="macro", ignore_index=255)
    np.testing.assert_allclose(metrics.mean_dice(cm), _torch(f1, t, p), rtol=1e-6)
