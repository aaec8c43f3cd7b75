"""segmentation_scores, segmentation_report and reduce_zero_label."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import metrics


def _cm():
    return metrics.confusion_from_labels(jnp.array([0, 2, 1, 1]), jnp.array([0, 0, 1, 1]), 4)


def test_scores_by_name_match_the_single_functions():
    cm = _cm()
    res = metrics.segmentation_scores(cm, ["mean_iou", "class_iou", "pixel_accuracy"])
    assert set(res) == {"mean_iou", "class_iou", "pixel_accuracy"}
    assert res["mean_iou"] == metrics.mean_iou(cm)
    np.testing.assert_array_equal(res["class_iou"], metrics.class_iou(cm))
    everything = metrics.segmentation_scores(cm, absent=0.0)
    assert everything["mean_accuracy"] == pytest.approx(0.5)


def test_scores_refuse_unknown_names_and_colliding_ignore_index():
    with pytest.raises(ValueError, match="unknown score 'miou'"):
        metrics.segmentation_scores(_cm(), ["miou"])
    with pytest.raises(ValueError, match="ignore_index=2 is also class 2 .* mean_iou"):
        metrics.segmentation_scores(_cm(), ["mean_iou"], ignore_index=2)
    # Outside the classes, no collision.
    metrics.segmentation_scores(_cm(), ["mean_iou"], ignore_index=255)


def test_report_prints_every_class_with_its_name_and_the_means():
    text = metrics.segmentation_report(_cm(), ["road", "car", "sky", "tree"])
    lines = text.splitlines()
    assert lines[0].split() == [
        "class",
        "IoU",
        "Acc",
        "Dice",
        "Prec",
        "GT",
        "pixels",
        "pred",
        "pixels",
    ]
    road = next(line for line in lines if line.startswith("road"))
    assert road.split() == ["road", "50.00", "50.00", "66.67", "100.00", "2", "1"]
    tree = next(line for line in lines if line.startswith("tree"))
    assert tree.split()[1:5] == ["nan"] * 4
    assert "mIoU 50.00" in text and "aAcc 75.00" in text and "mAcc 75.00" in text


def test_report_reads_host_counts_of_a_state():
    s = metrics.ConfusionState.init(2).add_matrix(jnp.full((2, 3), 2**31 - 1, jnp.int32))
    s = s.merge(s)
    text = metrics.segmentation_report(s.counts(), digits=1)
    assert f"{3 * 2 * (2**31 - 1):,}" in text
    with pytest.raises(ValueError, match="class_names has 1 names for 2 classes"):
        metrics.segmentation_report(s.counts(), ["a"])


def test_reduce_zero_label_matches_mmseg_convention():
    labels = jnp.array([0, 1, 2, 150, 255], jnp.uint8)
    out = metrics.reduce_zero_label(labels)
    assert out.dtype == jnp.uint8
    np.testing.assert_array_equal(out, [255, 0, 1, 149, 255])
    np.testing.assert_array_equal(
        metrics.reduce_zero_label(jnp.array([0, 3, -1]), ignore_index=-1), [-1, 2, -1]
    )
    with pytest.raises(TypeError, match="integer"):
        metrics.reduce_zero_label(jnp.zeros(3))
    with pytest.raises(ValueError, match="does not fit"):
        metrics.reduce_zero_label(labels, ignore_index=-1)
