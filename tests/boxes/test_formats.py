"""box_convert and box_area against float64 NumPy and hand values."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes
from tests.boxes import np_reference as ref

FORMATS = ["xyxy", "xywh", "cxcywh"]


def test_hand_values():
    b = jnp.array([10.0, 20.0, 4.0, 6.0])
    np.testing.assert_array_equal(boxes.box_convert(b, "cxcywh", "xyxy"), [8, 17, 12, 23])
    np.testing.assert_array_equal(boxes.box_convert(b, "xywh", "xyxy"), [10, 20, 14, 26])
    np.testing.assert_array_equal(boxes.box_convert(b, "xyxy", "xywh"), [10, 20, -6, -14])
    np.testing.assert_array_equal(boxes.box_area(jnp.array([[0, 0, 2, 3], [0, 0, 4, 4]])), [6, 16])


def test_every_pair_of_formats_matches_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    xyxy = ref.random_boxes(rng, (2, 5))

    @jax.jit
    def convert_all(b):
        return {
            (i, o): boxes.box_convert(b[i], i, o) for i, o in itertools.product(FORMATS, FORMATS)
        }

    inputs = {f: jnp.asarray(ref.from_xyxy(xyxy, f), jnp.float32) for f in FORMATS}
    for (i, o), got in convert_all(inputs).items():
        expected = ref.from_xyxy(ref.to_xyxy(np.asarray(inputs[i], np.float64), i), o)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5, err_msg=f"{i}->{o}")
        back = boxes.box_convert(got, o, i)
        np.testing.assert_allclose(back, inputs[i], rtol=1e-6, atol=1e-5)


def test_area_in_every_format_and_degenerate_boxes():
    rng = np.random.default_rng(1)
    xyxy = ref.random_boxes(rng, (3, 4))
    expected = (xyxy[..., 2] - xyxy[..., 0]) * (xyxy[..., 3] - xyxy[..., 1])
    for f in FORMATS:
        got = boxes.box_area(jnp.asarray(ref.from_xyxy(xyxy, f), jnp.float32), fmt=f)
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=f)
    # Zero-size and inverted boxes have area 0 (torchvision: signed product, here 4).
    np.testing.assert_array_equal(
        boxes.box_area(jnp.array([[1, 1, 1, 5], [3, 3, 1, 1], [3, 0, 1, 2.0]])), [0, 0, 0]
    )
    g = jax.grad(lambda b: jnp.sum(boxes.box_area(b)))(jnp.array([[1.0, 1, 1, 1], [3, 3, 1, 1]]))
    assert jnp.all(jnp.isfinite(g))


def test_dtypes_and_vmap():
    ints = jnp.array([[0, 0, 3, 1]])
    assert boxes.box_convert(ints, "xyxy", "cxcywh").dtype == jnp.float32
    np.testing.assert_array_equal(boxes.box_convert(ints, "xyxy", "cxcywh"), [[1.5, 0.5, 3, 1]])
    assert boxes.box_area(ints).dtype == jnp.float32
    half = jnp.array([[0, 0, 3, 1]], jnp.bfloat16)
    assert boxes.box_convert(half, "xyxy", "xywh").dtype == jnp.bfloat16
    assert boxes.box_area(half).dtype == jnp.bfloat16
    b = jnp.arange(24.0).reshape(3, 2, 4)
    mapped = jax.vmap(lambda x: boxes.box_convert(x, "xywh", "cxcywh"))(b)
    np.testing.assert_array_equal(mapped, boxes.box_convert(b, "xywh", "cxcywh"))


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="in_fmt"):
        boxes.box_convert(jnp.zeros(4), "xyzw", "xyxy")
    with pytest.raises(ValueError, match="out_fmt"):
        boxes.box_convert(jnp.zeros(4), "xyxy", "XYXY")
    with pytest.raises(ValueError, match="boxes.*4"):
        boxes.box_convert(jnp.zeros((2, 5)), "xyxy", "xywh")
    with pytest.raises(ValueError, match="fmt"):
        boxes.box_area(jnp.zeros(4), fmt="cxcy")
    with pytest.raises(ValueError, match="boxes.*4"):
        boxes.box_area(jnp.zeros(3))
    with pytest.raises(TypeError, match="boxes"):
        boxes.box_area(jnp.zeros(4, jnp.complex64))
