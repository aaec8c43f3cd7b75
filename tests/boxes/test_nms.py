"""nms / batched_nms against a sequential float64 greedy reference and hand cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes
from tests.boxes import np_reference as ref


def _kept(result) -> list:
    indices, count = (np.asarray(x) for x in result)
    assert np.all(indices[count:] == -1)
    return indices[:count].tolist()


def _problems(rng, batch, n, scale):
    xy = rng.uniform(0, scale, (batch, n, 2))
    wh = rng.uniform(5, 40, (batch, n, 2))
    b = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    return b, rng.uniform(size=(batch, n)).astype(np.float32)


def test_hand_cases():
    b = jnp.array([[0, 0, 3, 1], [1, 0, 4, 1]], jnp.float32)
    s = jnp.array([0.9, 0.8])
    assert _kept(boxes.nms(b, s, 0.5)) == [0, 1]  # IoU exactly 0.5 is not > 0.5
    assert _kept(boxes.nms(b, s, 0.49)) == [0]
    # Equal scores: the lower index is kept.
    same = jnp.array([[0, 0, 2, 2]] * 3, jnp.float32)
    assert _kept(boxes.nms(same, jnp.array([0.5, 0.7, 0.7]), 0.5)) == [1]


@jax.jit
def _both(b, s, labels, threshold):
    plain = jax.vmap(boxes.nms, (0, 0, None))(b, s, threshold)
    return plain, jax.vmap(boxes.batched_nms, (0, 0, 0, None))(b, s, labels, threshold)


def test_random_problems_match_sequential_greedy():
    rng = np.random.default_rng(0)
    # 300 boxes span two blocks of 256; the dense layout makes long suppression chains.
    b, s = _problems(rng, 4, 300, 120.0)
    labels = rng.integers(0, 3, (4, 300))
    for threshold in (0.3, 0.65):
        _check_problems(b, s, labels, threshold)


def _check_problems(b, s, labels, threshold):
    plain, per_class = _both(b, s, labels, jnp.float32(threshold))
    for k in range(len(b)):
        b64 = b[k].astype(np.float64)
        expected = ref.greedy_nms(b64, s[k], threshold)
        assert _kept((plain[0][k], plain[1][k])) == expected
        expected = ref.greedy_nms(b64, s[k], threshold, labels[k])
        assert _kept((per_class[0][k], per_class[1][k])) == expected


def test_many_kept_boxes_and_max_output():
    rng = np.random.default_rng(1)
    # Sparse boxes: most of 700 are kept, so the kept buffer spans several chunks.
    b, s = _problems(rng, 1, 700, 600.0)
    b, s = b[0], s[0]
    expected = ref.greedy_nms(b.astype(np.float64), s, 0.5)
    assert len(expected) > 512
    f = jax.jit(boxes.nms, static_argnames="max_output")
    assert _kept(f(b, s, 0.5)) == expected
    indices, count = f(b, s, 0.5, max_output=100)
    assert indices.shape == (100,) and int(count) == 100
    assert _kept((indices, count)) == expected[:100]
    indices, count = f(b[:5], s[:5], 0.5, max_output=8)
    assert indices.shape == (8,) and _kept((indices, count)) == ref.greedy_nms(b[:5], s[:5], 0.5)


def test_traced_threshold_and_formats():
    rng = np.random.default_rng(2)
    b, s = _problems(rng, 1, 50, 60.0)
    b, s = b[0], s[0]
    f = jax.jit(boxes.nms, static_argnames="fmt")
    for t in (0.2, 0.6):
        expected = ref.greedy_nms(b.astype(np.float64), s, t)
        assert _kept(f(b, s, jnp.float32(t))) == expected
        cxcywh = boxes.box_convert(b, "xyxy", "cxcywh")
        assert _kept(f(cxcywh, s, jnp.float32(t), fmt="cxcywh")) == expected


def test_nan_scores_rank_lowest_and_nan_boxes_stay_local():
    b = jnp.array([[0, 0, 2, 2]] * 4 + [[5, 5, 6, 6]], jnp.float32)
    s = jnp.array([np.nan, -np.inf, np.nan, 0.1, 0.2])
    # 3 (0.1) beats -inf beats NaN; NaN scores among themselves by index.
    assert _kept(boxes.nms(b, s, 0.5)) == [4, 3]
    indices, _ = boxes.nms(b, s, 1.5)  # nothing suppressed: the full order
    np.testing.assert_array_equal(indices, [4, 3, 1, 0, 2])
    # A box with a NaN coordinate neither suppresses nor is suppressed.
    nan_box = b.at[0, 2].set(np.nan)
    s2 = jnp.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert _kept(boxes.nms(nan_box, s2, 0.5)) == [0, 1, 4]


def test_batched_nms_with_negative_coordinates():
    # Offsetting by idx * (max coordinate + 1) with max coordinate -10 moves class 1 by
    # -9, onto class 0's boxes; categories must still stay independent.
    b = jnp.array([[-20, -20, -10, -10], [-29, -29, -19, -19], [-20, -20, -11, -10]], jnp.float32)
    s = jnp.array([0.9, 0.8, 0.7])
    idxs = jnp.array([0, 1, 1])
    assert _kept(boxes.batched_nms(b, s, idxs, 0.5)) == [0, 1, 2]
    assert _kept(boxes.batched_nms(b, s, jnp.array([0, 1, 0]), 0.5)) == [0, 1]


def test_empty_input_and_zero_max_output():
    indices, count = boxes.nms(jnp.zeros((0, 4)), jnp.zeros(0), 0.5)
    assert indices.shape == (0,) and int(count) == 0
    indices, count = boxes.nms(jnp.zeros((0, 4)), jnp.zeros(0), 0.5, max_output=3)
    np.testing.assert_array_equal(indices, [-1, -1, -1])
    indices, count = boxes.nms(jnp.ones((3, 4)), jnp.ones(3), 0.5, max_output=0)
    assert indices.shape == (0,) and int(count) == 0


def test_bad_input_names_the_argument():
    b, s = jnp.zeros((3, 4)), jnp.zeros(3)
    with pytest.raises(ValueError, match="boxes"):
        boxes.nms(jnp.zeros((3, 5)), s, 0.5)
    with pytest.raises(ValueError, match="boxes"):
        boxes.nms(jnp.zeros((2, 3, 4)), s, 0.5)
    with pytest.raises(ValueError, match="scores"):
        boxes.nms(b, jnp.zeros(4), 0.5)
    with pytest.raises(ValueError, match="fmt"):
        boxes.nms(b, s, 0.5, fmt="yxyx")
    with pytest.raises(TypeError, match="iou_threshold"):
        boxes.nms(b, s, "0.5")
    with pytest.raises(TypeError, match="iou_threshold"):
        boxes.nms(b, s, jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="max_output"):
        boxes.nms(b, s, 0.5, max_output=-1)
    with pytest.raises(TypeError, match="max_output"):
        boxes.nms(b, s, 0.5, max_output=2.0)
    with pytest.raises(TypeError, match="idxs"):
        boxes.batched_nms(b, s, jnp.zeros(3), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        boxes.batched_nms(b, s, jnp.zeros(2, jnp.int32), 0.5)


def _torchvision_cpu_nms(b, s, threshold):
    """Transcription of torchvision's CPU kernel (csrc/ops/cpu/nms_kernel.cpp), in float32.

    torchvision is not installed here (a 5.5 GB build), so this is the reference: areas,
    intersection and ``ovr = inter / (area_i + area_j - inter)`` in float32, then
    ``ovr > iou_threshold`` with the threshold a C++ double (the float promoted to double).
    """
    b = np.asarray(b, np.float32)
    x1, y1, x2, y2 = b.T
    areas = (x2 - x1) * (y2 - y1)
    order = np.array(sorted(range(len(s)), key=lambda i: (-s[i], i)))
    suppressed = np.zeros(len(s), bool)
    keep = []
    for _i, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(int(i))
        j = order[_i + 1 :]  # the kernel's inner loop over j, element-wise in float32
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]))
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]))
        inter = w * h
        ovr = inter / (areas[i] + areas[j] - inter)
        assert ovr.dtype == np.float32
        suppressed[j] |= ovr.astype(np.float64) > float(threshold)
    return keep


def test_exact_threshold_ties_on_integer_boxes_keep_torchvisions_indices():
    # Before: the division-free test I (1 + t) > t (A + B) rounds differently from
    # torchvision's float32 IoU at IoU == t exactly; e.g. 20 / 100 == 0.2: torchvision
    # suppresses (float32(0.2) > 0.2 as doubles), jaxvision kept the box.
    tie = jnp.array([[0, 0, 10, 10], [0, 0, 10, 2], [0, 0, 10, 8]], jnp.float32)
    scores = jnp.array([0.9, 0.8, 0.7])
    for t in (0.2, 0.8):
        assert _kept(boxes.nms(tie, scores, t)) == _torchvision_cpu_nms(tie, scores, t)
    assert _kept(boxes.nms(tie, scores, 0.2)) == [0]
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 6, (200, 2))
    b = np.concatenate([xy, xy + rng.integers(1, 5, (200, 2))], -1).astype(np.float32)
    s = rng.permutation(200).astype(np.float32) / 200
    for t in (0.2, 0.8, 0.25, 1 / 3, 0.4, 0.6, 0.7, 0.1):
        assert _kept(boxes.nms(b, s, t)) == _torchvision_cpu_nms(b, s, t), t


def test_huge_coordinates_give_no_nan_iou_and_no_duplicates():
    # Before: areas past float32's range (coordinates ~1.8e19) gave inf / inf = NaN IoU,
    # so NMS kept exact duplicates.
    big = np.float32(1.8e19)
    b = jnp.array([[0, 0, big, big], [0, 0, big, big], [0, 0, big, big / 2]], jnp.float32)
    iou = np.asarray(boxes.box_iou(b, b))
    np.testing.assert_allclose(iou, [[1, 1, 0.5], [1, 1, 0.5], [0.5, 0.5, 1]], rtol=1e-6)
    assert _kept(boxes.nms(b, jnp.array([0.9, 0.8, 0.7]), 0.6)) == [0, 2]
    giou = np.asarray(boxes.generalized_box_iou(b, b))
    assert np.isfinite(giou).all()


def test_nms_under_x64_scatters_no_int64_into_int32():
    import warnings

    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        b = jnp.array([[0, 0, 2, 2], [0, 0, 2, 2.5], [5, 5, 6, 6]], jnp.float64)
        indices, count = boxes.nms(b, jnp.array([0.9, 0.8, 0.7]), 0.5)
        assert indices.dtype == jnp.int32 and count.dtype == jnp.int32
        assert _kept((indices, count)) == [0, 2]
