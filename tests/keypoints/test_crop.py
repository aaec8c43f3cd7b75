"""Top-down crops: matrices, keypoint round trips, and the crop against cv2.warpAffine."""

import numpy as np
import pytest

from jaxvision._src.keypoints.crop import (
    crop_images,
    crop_matrix,
    keypoints_from_crop,
    keypoints_to_crop,
)


def test_box_maps_onto_the_crop_with_aspect_and_padding():
    box = np.array([10.0, 20.0, 30.0, 80.0])  # taller than 4:3, so the width grows
    m = crop_matrix(box, (64, 48), padding=1.25)
    corners = keypoints_to_crop(np.array([[25.0, 60.0], [25.0, 20.0]]), m)
    np.testing.assert_allclose(corners[0], [24.0, 32.0], rtol=1e-6)  # centre -> centre
    np.testing.assert_allclose(corners[1, 1], 32.0 - 40.0 * 64 / (80 * 1.25), rtol=1e-6)


def test_keypoints_round_trip_with_rotation_and_scale():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(0, 100, (5, 2)), rng.uniform(10, 90, (5, 2))], -1)
    m = crop_matrix(
        boxes, (64, 48), scale=rng.uniform(0.8, 1.2, 5), rotation=rng.uniform(-40, 40, 5)
    )
    kp = rng.uniform(0, 200, (5, 17, 2))
    np.testing.assert_allclose(
        keypoints_from_crop(keypoints_to_crop(kp, m), m), kp, rtol=1e-4, atol=1e-3
    )


def test_rotation_is_counter_clockwise_on_screen():
    m = crop_matrix(np.array([0.0, 0.0, 10.0, 10.0]), (10, 10), padding=1.0, rotation=90.0)
    # A point right of the centre goes above it (smaller y) in the crop.
    np.testing.assert_allclose(
        keypoints_to_crop(np.array([[8.0, 5.0]]), m), [[5.0, 2.0]], atol=1e-5
    )


def test_crop_images_equals_cv2_warp_affine_and_keeps_keypoints_on_their_pixels():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(40, 50, 3)).astype(np.float32)
    m = np.asarray(crop_matrix(np.array([12.0, 7.0, 20.0, 25.0]), (32, 24)), np.float64)
    crop = np.asarray(crop_images(image, m, (32, 24)))
    # The same map in OpenCV's pixel-centre coordinates: x_cv = x - 0.5 on both sides.
    m_cv = m.copy()
    m_cv[:, 2] += 0.5 * (m[:, 0] + m[:, 1]) - 0.5
    want = cv2.warpAffine(
        image, m_cv, (24, 32), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    np.testing.assert_allclose(crop, want, rtol=1e-3, atol=2e-3)
    # A bright pixel lands where its keypoint goes.
    dot = np.zeros((40, 50, 1), np.float32)
    dot[20, 15] = 1.0  # pixel (x=15, y=20), centre (15.5, 20.5)
    out = np.asarray(crop_images(dot, m, (32, 24)))[..., 0]
    at = np.asarray(keypoints_to_crop(np.array([[15.5, 20.5]]), m))[0]
    y, x = np.unravel_index(out.argmax(), out.shape)
    assert abs(x + 0.5 - at[0]) <= 0.5 + 1e-6 and abs(y + 0.5 - at[1]) <= 0.5 + 1e-6


def test_bad_boxes_are_named():
    with pytest.raises(ValueError, match="boxes"):
        crop_matrix(np.zeros(3), (64, 48))
