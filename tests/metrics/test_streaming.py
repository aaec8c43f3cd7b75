"""ConfusionState: merge, psum across 8 devices, exactness past 2^31."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision import metrics

from .reference import reference_counts


def _labels(seed, shape, c):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, c + 1, size=shape).astype(np.uint8)
    t[t == c] = 255
    p = rng.integers(0, c, size=shape).astype(np.uint8)
    return t, p


def _reference(t, p, c):
    n, gt = reference_counts(t, p, c, ignore_index=255)
    return n, gt


def _split(counts):
    c = counts.shape[0]
    return counts[:, :c], counts.sum(1)


def test_update_counts_match_numpy_and_merge_equals_one_pass():
    c = 5
    ta, pa = _labels(0, (3, 16, 16), c)
    tb, pb = _labels(1, (2, 16, 16), c)
    update = jax.jit(metrics.ConfusionState.update)
    empty = metrics.ConfusionState.init(c, ignore_index=255)
    a = update(empty, ta, pa)
    b = update(empty, tb, pb)
    both = update(a, tb, pb)
    merged = jax.jit(metrics.ConfusionState.merge)(a, b)
    np.testing.assert_array_equal(merged.counts(), both.counts())
    np.testing.assert_array_equal(b.merge(a).counts(), both.counts())
    n, gt = _reference(np.concatenate([ta, tb]), np.concatenate([pa, pb]), c)
    np.testing.assert_array_equal(_split(both.counts())[0], n)
    np.testing.assert_array_equal(_split(both.counts())[1], gt)
    scores = both.compute(["mean_iou", "pixel_accuracy"])
    assert scores["mean_iou"] == pytest.approx(metrics.mean_iou(both.counts()))


def test_psum_over_8_devices_equals_one_device():
    c = 4
    n_dev = len(jax.devices())
    assert n_dev == 8
    t, p = _labels(2, (n_dev * 2, 12, 10), c)
    mesh = jax.make_mesh((n_dev,), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    ts, ps = jax.device_put(t, sharding), jax.device_put(p, sharding)
    init = metrics.ConfusionState.init(c, ignore_index=255)

    def step(state, t, p):
        return state.update(t, p).psum("data")

    sharded = jax.jit(
        jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P())
    )(init, ts, ps)
    single = init.update(t, p)
    np.testing.assert_array_equal(sharded.counts(), single.counts())
    assert sharded.compute()["mean_iou"] == pytest.approx(single.compute()["mean_iou"])


def test_psum_of_large_per_device_counts_is_exact():
    c = 2
    mesh = jax.make_mesh((8,), ("data",))
    big = np.full((8, c, c + 1), 2**31 - 1, np.int32)
    big[:, 1, 2] = np.arange(8)

    def step(cm):
        return metrics.ConfusionState.init(c).add_matrix(cm[0]).psum("data")

    out = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("data"), out_specs=P()))(
        jax.device_put(big, NamedSharding(mesh, P("data")))
    )
    np.testing.assert_array_equal(out.counts(), big.astype(np.int64).sum(0))


def test_totals_past_2_31_stay_exact_without_materialising_pixels():
    c = 3
    t, p = _labels(3, (2, 32, 32), c)
    state = metrics.ConfusionState.init(c, ignore_index=255).update(t, p)
    one = state.counts()
    doubled = jax.jit(lambda s: s.merge(s))
    for _ in range(24):  # 2^24 copies of 2048 pixels: 2^35 pixels in all
        state = doubled(state)
    counts = state.counts()
    assert counts.sum() > 2**34
    np.testing.assert_array_equal(counts, one * 2**24)
    # Near-limit int32 batch counts added many times.
    s = metrics.ConfusionState.init(c)
    cm = jnp.full((c, c + 1), 2**31 - 1, jnp.int32)
    add = jax.jit(metrics.ConfusionState.add_matrix)
    for _ in range(5):
        s = add(s, cm)
    np.testing.assert_array_equal(s.counts(), np.full((c, c + 1), 5 * (2**31 - 1), np.int64))
    np.testing.assert_allclose(s.matrix(), 5 * (2**31 - 1), rtol=1e-7)
    assert s.compute()["pixel_accuracy"] == pytest.approx(1 / (c + 1))


def test_add_matrix_per_image_stack():
    c = 3
    t, p = _labels(4, (5, 8, 8), c)
    per = metrics.confusion_matrix(t, p, c, ignore_index=255, per_image=True)
    s = metrics.ConfusionState.init(c, ignore_index=255)
    np.testing.assert_array_equal(s.add_matrix(per).counts(), s.update(t, p).counts())


def test_all_ignored_state_gives_defined_result():
    s = metrics.ConfusionState.init(3, ignore_index=255)
    s = s.update(np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8))
    np.testing.assert_array_equal(s.counts(), np.zeros((3, 4)))
    res = s.compute()
    assert np.isnan(res["mean_iou"]) and np.isnan(res["pixel_accuracy"])


def test_bad_use_is_refused():
    s = metrics.ConfusionState.init(3, ignore_index=255)
    with pytest.raises(ValueError, match="cannot merge"):
        s.merge(metrics.ConfusionState.init(4, ignore_index=255))
    with pytest.raises(ValueError, match="cannot merge"):
        s.merge(metrics.ConfusionState.init(3))
    with pytest.raises(ValueError, match=r"\[C, C \+ 1\]"):
        s.add_matrix(jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(TypeError, match="integer counts"):
        s.add_matrix(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="num_classes must be in"):
        metrics.ConfusionState.init(0)
    collide = metrics.ConfusionState.init(3, ignore_index=0)
    collide = collide.update(np.array([0, 1, 2]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="ignore_index=0 is also class 0"):
        collide.compute(["mean_iou"])


def test_scores_inside_jit_from_the_float_matrix_equal_compute():
    t, p = _labels(6, (2, 16, 16), 4)
    state = metrics.ConfusionState.init(4, ignore_index=255).update(t, p)
    inside = jax.jit(lambda s: metrics.segmentation_scores(s.matrix(), ["mean_iou"]))(state)
    assert inside["mean_iou"] == pytest.approx(state.compute(["mean_iou"])["mean_iou"])


def test_add_matrix_int64_counts_are_exact_or_refused():
    # Before: int64 counts were cast to int32, so 2**33 + 5 became 5.
    state = metrics.ConfusionState.init(2)
    cm = np.zeros((2, 3), np.int64)
    cm[0, 1] = 2**33 + 5
    cm[1, 1] = 7
    np.testing.assert_array_equal(state.add_matrix(cm).counts(), cm)
    stack = np.stack([cm, cm, cm])
    np.testing.assert_array_equal(state.add_matrix(stack).counts(), 3 * cm)
    with pytest.raises(OverflowError, match="2\\*\\*47"):
        state.add_matrix(np.full((2, 3), 2**47, np.int64))
    with pytest.raises(ValueError, match="negative"):
        state.add_matrix(-cm)
    with pytest.raises(OverflowError, match="2\\*\\*47"):
        state.add_matrix(np.full((2, 3), 2**64 - 1, np.uint64))
    big = np.full((2, 3), 2**32 - 1, np.uint32)  # above int32, below uint32's max
    np.testing.assert_array_equal(state.add_matrix(jnp.asarray(big)).counts(), big)
    np.testing.assert_array_equal(jax.jit(type(state).add_matrix)(state, big).counts(), big)


def test_add_matrix_sums_more_than_2_15_per_image_matrices_exactly():
    # Before: the low words of 2**15 + 1 matrices summed past 2**31 into a negative count.
    n = 2**15 + 1
    cm = np.full((n, 1, 2), 2**16 - 1, np.int32)
    want = np.full((1, 2), n * (2**16 - 1), np.int64)
    state = metrics.ConfusionState.init(1)
    np.testing.assert_array_equal(state.add_matrix(cm).counts(), want)
    np.testing.assert_array_equal(jax.jit(type(state).add_matrix)(state, cm).counts(), want)
