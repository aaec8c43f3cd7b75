"""Pairwise IoU family against hand values, float64 NumPy formulas and its own laws."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxvision import boxes
from tests.boxes import np_reference as ref

NAMES = list(ref.PAIRWISE)
FUNCS = {name: getattr(boxes, name) for name in NAMES}


@functools.partial(jax.jit, static_argnames=("fmt", "eps"))
def all_four(b1, b2, fmt="xyxy", eps=0.0):
    """The four functions in one compiled call (compiling is most of the test time)."""
    return {n: FUNCS[n](b1, b2, fmt=fmt, eps=eps) for n in NAMES}


# (box a, box b, IoU, GIoU, DIoU, CIoU), worked out by hand.
HAND = [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1, 1, 1, 1),
    ([0, 0, 1, 1], [2, 0, 3, 1], 0, -1 / 3, -0.4, -0.4),
    ([0, 0, 1, 1], [1, 0, 2, 1], 0, 0, -0.2, -0.2),
    ([0, 0, 4, 4], [1, 1, 3, 3], 0.25, 0.25, 0.25, 0.25),
    ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7, -5 / 63, 2 / 63, 2 / 63),
    ([0, 0, 2, 1], [0, 0, 1, 2], 1 / 3, 1 / 12, 13 / 48, 0.2370817),
    ([200, 599, 300, 599], [200, 500, 300, 600], 0, 0, -0.12005, -0.17005),
]


def test_hand_checked_values():
    a = jnp.array([h[0] for h in HAND], jnp.float32)
    b = jnp.array([h[1] for h in HAND], jnp.float32)
    values = all_four(a, b)
    for k, name in enumerate(NAMES):
        got = np.diag(np.asarray(values[name]))
        np.testing.assert_allclose(
            got, [h[2 + k] for h in HAND], rtol=1e-5, atol=2e-6, err_msg=name
        )


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_random_boxes_match_float64_formulas(fmt):
    rng = np.random.default_rng(0)
    b1 = ref.random_boxes(rng, (2, 3, 7))
    b2 = ref.random_boxes(rng, (2, 3, 5))
    # Some exact duplicates and contained boxes, where IoU is 1 or the penalty is 0.
    b2[0, 0, 0] = b1[0, 0, 0]
    centre = (b1[1, 2, 0, :2] + b1[1, 2, 0, 2:]) / 2
    b2[1, 2, 0] = np.concatenate([centre - 0.5, centre + 0.5])
    in1 = jnp.asarray(ref.from_xyxy(b1, fmt), jnp.float32)
    in2 = jnp.asarray(ref.from_xyxy(b2, fmt), jnp.float32)
    f32 = ref.to_xyxy(np.asarray(in1, np.float64), fmt), ref.to_xyxy(np.asarray(in2), fmt)
    values = all_four(in1, in2, fmt=fmt)
    for name, got in values.items():
        assert got.shape == (2, 3, 7, 5) and got.dtype == jnp.float32
        np.testing.assert_allclose(
            got, ref.pairwise(name, *f32), rtol=1e-5, atol=2e-6, err_msg=name
        )


def test_symmetric_and_bounded():
    rng = np.random.default_rng(1)
    b1 = jnp.asarray(ref.random_boxes(rng, (9,)), jnp.float32)
    b2 = jnp.asarray(ref.random_boxes(rng, (9,)), jnp.float32)
    forward, backward, same = all_four(b1, b2), all_four(b2, b1), all_four(b1, b1)
    for name in NAMES:
        v = forward[name]
        np.testing.assert_allclose(v, backward[name].T, rtol=1e-5, atol=1e-6, err_msg=name)
        assert jnp.all(v <= 1 + 1e-6) and jnp.all(v >= (0 if name == "box_iou" else -1) - 1e-6)
        np.testing.assert_allclose(jnp.diag(same[name]), 1, rtol=1e-5, atol=1e-6, err_msg=name)


def test_vmap_equals_batch_dimensions():
    rng = np.random.default_rng(2)
    b1 = jnp.asarray(ref.random_boxes(rng, (4, 6)), jnp.float32)
    b2 = jnp.asarray(ref.random_boxes(rng, (4, 3)), jnp.float32)
    mapped, batched = jax.jit(jax.vmap(all_four))(b1, b2), all_four(b1, b2)
    for name in NAMES:
        np.testing.assert_allclose(mapped[name], batched[name], rtol=1e-6, err_msg=name)


def test_gradients_match_finite_differences_of_the_formulas():
    rng = np.random.default_rng(3)
    b1 = ref.random_boxes(rng, (4,))
    b2 = ref.random_boxes(rng, (3,))
    b1[0] = b2[0] + [0.3, -0.2, 0.1, 0.4]  # an overlapping pair
    w = rng.normal(size=(4, 3))
    grads = jax.jit(
        jax.jacrev(lambda x, y: {n: jnp.sum(w * v) for n, v in all_four(x, y).items()})
    )(jnp.asarray(b1, jnp.float32), jnp.asarray(b2, jnp.float32))
    for name in NAMES:
        got = grads[name]
        if name == "box_ciou":  # alpha is held constant, as in the peers
            _, alpha = ref.ciou_v_alpha(b1[:, None], b2[None])

            def f(x, alpha=alpha):
                v, _ = ref.ciou_v_alpha(x[:, None], b2[None])
                return w * (ref.diou(x[:, None], b2[None]) - alpha * v)
        else:

            def f(x, n=name):
                return w * ref.pairwise(n, x, b2)

        np.testing.assert_allclose(
            got, ref.numerical_grad(f, b1.copy()), rtol=1e-5, atol=2e-5, err_msg=name
        )


DEGENERATE = np.array(
    [
        [0, 0, 0, 0],  # a point
        [1, 1, 1, 1],  # another point
        [0, 0, 2, 0],  # zero height
        [0, 0, 0, 2],  # zero width
        [3, 3, 1, 1],  # x2 < x1 and y2 < y1
        [0, 0, 2, 2],
    ],
    np.float32,
)


@jax.jit
def _values_and_grads_jit(b1, b2):
    """All four values, and the gradient of their sum (NaN anywhere makes it NaN)."""

    def total(x, y):
        return sum(jnp.sum(v) for v in all_four(x, y).values())

    return [*all_four(b1, b2).values(), *jax.grad(total, argnums=(0, 1))(b1, b2)]


def test_degenerate_boxes_give_documented_finite_values():
    d = jnp.asarray(DEGENERATE)
    for x in _values_and_grads_jit(d, d):
        assert jnp.all(jnp.isfinite(x))
    values = all_four(d, d)
    iou = values["box_iou"]
    # Empty boxes (the first five) have IoU 0 with everything, themselves included.
    np.testing.assert_array_equal(iou[:5], 0)
    np.testing.assert_array_equal(iou[5], [0, 0, 0, 0, 0, 1])
    # Two equal points: enclosing area 0 and diagonal 0, so both penalties are 0;
    # two distinct points: IoU 0, enclosing area 1, GIoU -1.
    assert values["box_giou"][0, 0] == 0 and values["box_diou"][0, 0] == 0
    assert values["box_giou"][0, 1] == -1
    # A zero-height box has angle pi/2 (atan2), a square pi/4: v = 4/pi^2 (pi/4)^2 = 1/4.
    expected = ref.diou(DEGENERATE[2], DEGENERATE[5]) - 0.25 * 0.25 / 1.25
    np.testing.assert_allclose(values["box_ciou"][2, 5], expected, rtol=1e-6)


coord = st.sampled_from([-2.0, -1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 1e-3, 1e4])


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (2, 6, 4), elements=coord))
def test_values_and_gradients_stay_finite(b):
    for x in _values_and_grads_jit(jnp.asarray(b[0]), jnp.asarray(b[1])):
        assert jnp.all(jnp.isfinite(x))


def test_nan_coordinates_affect_only_their_pairs():
    rng = np.random.default_rng(4)
    b1 = ref.random_boxes(rng, (4,)).astype(np.float32)
    b2 = ref.random_boxes(rng, (3,)).astype(np.float32)
    clean = all_four(b1, b2)
    b1[1, 2] = np.nan
    b2[0, 0] = np.nan
    dirty = all_four(b1, b2)
    for name, c in clean.items():
        got = np.asarray(dirty[name])
        assert np.all(np.isnan(got[1])) and np.all(np.isnan(got[:, 0])), name
        np.testing.assert_array_equal(got[[0, 2, 3]][:, 1:], np.asarray(c)[[0, 2, 3]][:, 1:])


def test_dtypes():
    b = jnp.array([[0, 0, 4, 4], [1, 1, 3, 3]])
    ints, floats = all_four(b, b), all_four(b.astype(jnp.float32), b.astype(jnp.float32))
    halves = all_four(b.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
    for name in NAMES:
        assert ints[name].dtype == jnp.float32 and halves[name].dtype == jnp.bfloat16
        np.testing.assert_allclose(ints[name], floats[name], rtol=1e-6)
        np.testing.assert_allclose(halves[name].astype(jnp.float32), floats[name], atol=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_the_argument(name):
    f = FUNCS[name]
    good = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="boxes1.*4"):
        f(jnp.zeros((3, 5)), good)
    with pytest.raises(ValueError, match="boxes2.*4"):
        f(good, jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="boxes1"):
        f(jnp.zeros(4), good)
    with pytest.raises(ValueError, match="batch dimensions"):
        f(jnp.zeros((2, 3, 4)), jnp.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="fmt"):
        f(good, good, fmt="yxyx")
    with pytest.raises(TypeError, match="eps"):
        f(good, good, eps=1)
    with pytest.raises(TypeError, match="eps"):
        f(good, good, eps="small")
    with pytest.raises(ValueError, match="eps"):
        f(good, good, eps=-1e-7)
