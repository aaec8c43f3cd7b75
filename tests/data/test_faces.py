"""Generated faces: shapes, determinism, landmarks on the faces, LFW-style pairs."""

import numpy as np
import pytest

from jaxvision._src.data import faces


def test_images_landmarks_and_determinism():
    ids = faces.sample_identities(5, seed=3)
    labels = np.repeat(np.arange(5), 3)
    a = faces.generate_faces(ids, labels, size=32, seed=1)
    b = faces.generate_faces(ids, labels, size=32, seed=1)
    c = faces.generate_faces(ids, labels, size=32, seed=2)
    assert a.images.shape == (15, 32, 32, 3) and a.images.dtype == np.float32
    assert a.landmarks.shape == (15, 5, 2) and a.labels.tolist() == labels.tolist()
    assert 0 <= a.images.min() and a.images.max() <= 1
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)
    assert ((a.landmarks > 0) & (a.landmarks < 31)).all()
    # Eyes above the nose above the mouth in the face's own (rotated) frame: the eye
    # midpoint -> mouth midpoint direction passes near the nose.
    eyes, nose, mouth = a.landmarks[:, :2].mean(1), a.landmarks[:, 2], a.landmarks[:, 3:].mean(1)
    along = np.sum((nose - eyes) * (mouth - eyes), 1) / np.sum((mouth - eyes) ** 2, 1)
    assert ((along > 0.2) & (along < 0.9)).all()


def test_identities_differ_and_images_of_one_identity_resemble():
    ids = faces.sample_identities(20, seed=0)
    imgs = faces.generate_faces(ids, np.repeat(np.arange(20), 4), size=32, seed=0, max_rotation=0)
    flat = imgs.images.reshape(20, 4, -1)
    same = np.mean([np.abs(f[0] - f[1]).mean() for f in flat])
    other = np.mean([np.abs(flat[i, 0] - flat[i + 1, 0]).mean() for i in range(19)])
    assert same < other


def test_face_pairs_protocol():
    labels = np.repeat(np.arange(30), 5)
    pairs, same = faces.face_pairs(labels, num_folds=4, per_fold=25, seed=1)
    assert pairs.shape == (200, 2) and same.shape == (200,)
    np.testing.assert_array_equal(same.reshape(4, 50)[:, :25], True)
    np.testing.assert_array_equal(same.reshape(4, 50)[:, 25:], False)
    np.testing.assert_array_equal(labels[pairs[same, 0]], labels[pairs[same, 1]])
    assert (labels[pairs[~same, 0]] != labels[pairs[~same, 1]]).all()
    assert (pairs[:, 0] != pairs[:, 1]).all()
    with pytest.raises(ValueError, match="two images"):
        faces.face_pairs(np.arange(5))
