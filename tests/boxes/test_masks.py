"""masks_to_boxes against a NumPy reference built on np.nonzero."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes


def _reference(mask: np.ndarray) -> list:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0, 0, 0, 0]
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def test_random_masks_match_nonzero():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 5, 9, 13)) > 0.93
    masks[0, 0] = False  # an empty mask
    masks[1, 1] = False
    masks[1, 1, 4, 7] = True  # a single pixel: [x, y, x, y]
    got = jax.jit(boxes.masks_to_boxes)(masks)
    assert got.shape == (2, 5, 4) and got.dtype == jnp.float32
    expected = [[_reference(m) for m in row] for row in masks]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[1, 1], [7, 4, 7, 4])
    np.testing.assert_array_equal(got[0, 0], [0, 0, 0, 0])
    # Non-boolean masks: any non-zero value is foreground.
    np.testing.assert_array_equal(boxes.masks_to_boxes(masks.astype(np.uint8) * 3), expected)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="masks"):
        boxes.masks_to_boxes(jnp.ones(5))
