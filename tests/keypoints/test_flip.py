"""Flips: involution, left / right swap, and consistency between keypoints and heatmaps."""

import numpy as np
import pytest

from jaxvision._src.keypoints.constants import (
    COCO_FLIP_PAIRS,
    COCO_KEYPOINT_NAMES,
    COCO_SIGMAS,
    COCO_SKELETON,
)
from jaxvision._src.keypoints.flip import flip_heatmaps, flip_keypoints
from jaxvision._src.keypoints.heatmaps import gaussian_heatmaps


def test_flip_pairs_swap_left_and_right_names():
    for a, b in COCO_FLIP_PAIRS:
        left, right = COCO_KEYPOINT_NAMES[a], COCO_KEYPOINT_NAMES[b]
        assert left.startswith("left_") and right == "right_" + left[5:]
        assert COCO_SIGMAS[a] == COCO_SIGMAS[b]
    assert len(COCO_SIGMAS) == 17 and max(max(e) for e in COCO_SKELETON) == 16


def test_flip_keypoints_is_an_involution_and_mirrors_pixels():
    kp = np.random.default_rng(0).uniform(0, 50, (2, 17, 3))
    once = np.asarray(flip_keypoints(kp, 64.0))
    np.testing.assert_allclose(flip_keypoints(once, 64.0), kp, rtol=1e-6)
    np.testing.assert_allclose(once[:, 2, 0], 64.0 - kp[:, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(once[:, 0, 2], kp[:, 0, 2])  # the third column is carried
    # Pixel i's centre maps to pixel W - 1 - i's centre.
    np.testing.assert_allclose(
        flip_keypoints(np.array([[3.5, 0.0]]), 10, flip_pairs=()), [[6.5, 0.0]]
    )


def test_flipped_heatmaps_equal_heatmaps_of_flipped_keypoints():
    kp = np.random.default_rng(1).uniform(2, 14, (17, 2))
    maps = gaussian_heatmaps(kp, None, (16, 12), unbiased=True)
    flipped = flip_heatmaps(maps)
    want = gaussian_heatmaps(flip_keypoints(kp, 12.0), None, (16, 12), unbiased=True)
    np.testing.assert_allclose(flipped, want, rtol=1e-5, atol=1e-6)


def test_flip_pairs_out_of_range_are_named():
    with pytest.raises(ValueError, match="flip_pairs"):
        flip_keypoints(np.zeros((3, 2)), 4.0)
