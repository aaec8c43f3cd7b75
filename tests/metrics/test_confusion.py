"""confusion_matrix and confusion_matrix_from_logits against hand values and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import metrics

from .reference import reference_counts


def _split(cm):
    cm = np.asarray(cm)
    c = cm.shape[-2]
    return cm[..., :c], cm.sum(-1)


def test_hand_case_rows_are_ground_truth_columns_prediction():
    cm = metrics.confusion_matrix(jnp.array([0, 0, 1, 1]), jnp.array([0, 2, 1, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 0]])
    assert cm.dtype == jnp.int32


def test_ignored_and_out_of_range_targets_are_dropped():
    t = jnp.array([0, 255, 3, -1, 1, 2, 2])
    p = jnp.array([0, 1, 1, 1, 1, 2, 0])
    cm = metrics.confusion_matrix(t, p, 3, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]])


def test_out_of_range_prediction_is_a_miss_for_the_true_class_only():
    t = jnp.array([0, 0, 1, 1])
    p = jnp.array([0, 7, -2, 1])
    cm = np.asarray(metrics.confusion_matrix(t, p, 2))
    np.testing.assert_array_equal(cm, [[1, 0, 1], [0, 1, 1]])
    # Counted in t_i (so in the IoU's union) but a false positive for no class.
    np.testing.assert_allclose(metrics.class_iou(cm), [0.5, 0.5])
    np.testing.assert_allclose(metrics.precision(cm), [1.0, 1.0])


def test_ignore_index_inside_the_classes_follows_mmseg():
    cm = metrics.confusion_matrix(
        jnp.array([0, 1, 2, 2]), jnp.array([1, 1, 2, 0]), 3, ignore_index=0
    )
    np.testing.assert_allclose(metrics.class_iou(cm), [0.0, 1.0, 0.5])


def test_random_label_maps_match_numpy_under_jit():
    rng = np.random.default_rng(0)
    c = 7
    # 12 images with labels slightly outside [0, C) and an ignore label, one compile.
    t = rng.integers(-1, c + 2, size=(12, 33, 17))
    t[rng.random(t.shape) < 0.1] = 255
    p = rng.integers(-1, c + 1, size=t.shape)
    fn = jax.jit(metrics.confusion_matrix, static_argnums=2, static_argnames="ignore_index")
    cm = fn(jnp.asarray(t), jnp.asarray(p), c, ignore_index=255)
    n, gt = reference_counts(t, p, c, ignore_index=255)
    square, rows = _split(cm)
    np.testing.assert_array_equal(square, n)
    np.testing.assert_array_equal(rows, gt)
    per = metrics.confusion_matrix(
        jnp.asarray(t), jnp.asarray(p), c, ignore_index=255, per_image=True
    )
    assert per.shape == (12, c, c + 1)
    for i in [0, 5, 11]:
        n_i, gt_i = reference_counts(t[i], p[i], c, ignore_index=255)
        np.testing.assert_array_equal(_split(per[i])[0], n_i)
        np.testing.assert_array_equal(_split(per[i])[1], gt_i)
    np.testing.assert_array_equal(per.sum(0), cm)


@pytest.mark.parametrize("c", [17, 100, 255])
def test_uint8_labels_do_not_wrap(c):
    rng = np.random.default_rng(c)
    t = rng.integers(0, 256, size=(4, 64, 64), dtype=np.uint8)
    p = rng.integers(0, 256, size=(4, 64, 64), dtype=np.uint8)
    t[:, :8] = c - 1  # the largest class must land in the last row, not wrap to a small bin
    p[:, :4] = c - 1
    cm = metrics.confusion_matrix(jnp.asarray(t), jnp.asarray(p), c, ignore_index=255)
    n, gt = reference_counts(t, p, c, ignore_index=255)
    square, rows = _split(cm)
    np.testing.assert_array_equal(square, n)
    np.testing.assert_array_equal(rows, gt)


def test_all_ignored_input_gives_zero_counts_and_nan_scores():
    t = jnp.full((2, 8, 8), 255, jnp.uint8)
    p = jnp.zeros((2, 8, 8), jnp.uint8)
    cm = metrics.confusion_matrix(t, p, 5, ignore_index=255)
    np.testing.assert_array_equal(cm, np.zeros((5, 6)))
    assert np.isnan(metrics.mean_iou(cm))
    assert np.isnan(metrics.pixel_accuracy(cm))
    assert np.isnan(metrics.frequency_weighted_iou(cm))
    assert np.all(np.isnan(metrics.class_iou(cm)))
    np.testing.assert_array_equal(metrics.class_iou(cm, absent=0.0), np.zeros(5))


def test_bool_labels_and_empty_input():
    cm = metrics.confusion_matrix(jnp.array([True, False]), jnp.array([True, True]), 2)
    np.testing.assert_array_equal(cm, [[0, 1, 0], [0, 1, 0]])
    empty = metrics.confusion_matrix(jnp.zeros((0,), jnp.int32), jnp.zeros((0,), jnp.int32), 3)
    np.testing.assert_array_equal(empty, np.zeros((3, 4)))


@pytest.mark.parametrize("axis, layout", [(-1, "nhwc"), (1, "nchw")])
def test_from_logits_is_argmax_over_the_class_axis(axis, layout):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32)  # NHWC
    t = rng.integers(0, 4, size=(3, 5, 6))
    if layout == "nchw":
        logits = logits.transpose(0, 3, 1, 2)
    cm = metrics.confusion_matrix_from_logits(jnp.asarray(t), jnp.asarray(logits), axis=axis)
    n, gt = reference_counts(t, np.argmax(logits, axis=axis), 4)
    np.testing.assert_array_equal(_split(cm)[0], n)
    np.testing.assert_array_equal(_split(cm)[1], gt)


def test_vmap_over_images_equals_per_image():
    rng = np.random.default_rng(2)
    t = jnp.asarray(rng.integers(0, 3, size=(4, 10)))
    p = jnp.asarray(rng.integers(0, 3, size=(4, 10)))
    vm = jax.vmap(lambda a, b: metrics.confusion_matrix(a, b, 3))(t, p)
    np.testing.assert_array_equal(vm, metrics.confusion_matrix(t, p, 3, per_image=True))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(target=np.zeros((2, 3), np.int32), pred=np.zeros((3, 2), np.int32)),
            ValueError,
            "same shape",
        ),
        (dict(target=np.zeros(4, np.float32)), TypeError, "target must hold integer"),
        (dict(pred=np.zeros(4, np.float32)), TypeError, "confusion_matrix_from_logits"),
        (dict(num_classes=0), ValueError, "num_classes must be in"),
        (dict(num_classes=2.0), TypeError, "num_classes must be a Python int"),
        (dict(ignore_index=1.5), TypeError, "ignore_index must be None or a Python int"),
    ],
)
def test_bad_input_is_refused_at_trace_time(kwargs, error, match):
    args = dict(target=np.zeros(4, np.int32), pred=np.zeros(4, np.int32), num_classes=3)
    args.update(kwargs)
    fn = jax.jit(
        lambda t, p: metrics.confusion_matrix(
            t, p, args["num_classes"], ignore_index=args.get("ignore_index")
        )
    )
    with pytest.raises(error, match=match):
        fn(args["target"], args["pred"])


def test_bad_logits_are_refused():
    with pytest.raises(TypeError, match="logits must be floating"):
        metrics.confusion_matrix_from_logits(jnp.zeros(3, jnp.int32), jnp.zeros((3, 2), jnp.int32))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        metrics.confusion_matrix_from_logits(jnp.zeros(3, jnp.int32), jnp.zeros((3, 2)), axis=3)


@pytest.mark.parametrize("c", [19, 40])
def test_large_inputs_take_the_split_paths_and_stay_exact(c):
    # 65790 pixels (not a multiple of 8): pair packing for C=19, plain pieces for C=40.
    rng = np.random.default_rng(c)
    t = rng.integers(0, c + 1, size=(3, 129, 170)).astype(np.uint8)
    t[t == c] = 255
    p = rng.integers(0, c + 2, size=t.shape).astype(np.uint8)
    cm = np.asarray(metrics.confusion_matrix(jnp.asarray(t), jnp.asarray(p), c, ignore_index=255))
    keep = t != 255
    tt, pp = t[keep].astype(np.int64), np.minimum(p[keep], c).astype(np.int64)
    want = np.bincount(tt * (c + 1) + pp, minlength=c * (c + 1)).reshape(c, c + 1)
    np.testing.assert_array_equal(cm, want)


def test_histogram_drops_values_outside_its_bins_on_every_path():
    from jaxvision._src.metrics.histogram import histogram

    rng = np.random.default_rng(5)
    for length in [10, 700]:  # pair-packed and plain split paths
        bins = rng.integers(-3, length + 4, size=70_001).astype(np.int32)
        got = jax.jit(histogram, static_argnums=1)(jnp.asarray(bins), length)
        inside = bins[(bins >= 0) & (bins < length)]
        np.testing.assert_array_equal(got, np.bincount(inside, minlength=length))


def test_int64_labels_beyond_int32_never_wrap_into_classes():
    # Before: 2**32 + 1 became class 1 (numpy input through jnp.asarray, or under x64
    # through the int32 cast); such labels are out of range: dropped / a miss.
    target = np.array([2**32 + 1, 1, 1, -(2**32) + 1], np.int64)
    pred = np.array([1, 2**32 + 1, 1, 1], np.int64)
    cm = np.asarray(metrics.confusion_matrix(target, pred, 3))
    want = np.zeros((3, 4), np.int64)
    want[1, 3] = 1  # target 1, prediction out of range
    want[1, 1] = 1
    np.testing.assert_array_equal(cm, want)
    big = np.array([2**63 - 1, 2**40], np.uint64)
    assert int(metrics.confusion_matrix(big, big, 3).sum()) == 0
    with jax.enable_x64(True):
        cm64 = metrics.confusion_matrix(jnp.asarray(target), jnp.asarray(pred), 3)
        np.testing.assert_array_equal(np.asarray(cm64), want)


def test_nan_logits_never_count_as_a_class():
    # Before: argmax picked the NaN. A NaN logit ranks last (as NaN scores everywhere in
    # jaxvision); a pixel whose logits are all NaN is predicted as no class (a miss).
    logits = jnp.array([[1.0, jnp.nan, 0.0], [jnp.nan, jnp.nan, jnp.nan], [0.0, 2.0, 1.0]])
    cm = np.asarray(metrics.confusion_matrix_from_logits(jnp.array([1, 1, 1]), logits))
    want = np.zeros((3, 4), np.int64)
    want[1, 0] = 1  # NaN at class 1 loses to the finite maximum at class 0
    want[1, 3] = 1  # all NaN: outside [0, C), a miss for the true class
    want[1, 1] = 1
    np.testing.assert_array_equal(cm, want)
