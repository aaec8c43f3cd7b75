"""generate_face_scenes: boxes contain their landmarks, real faces are box-only, seeds repeat."""

import numpy as np
import pytest

from jaxvision import data

# The generated identities come from the face-recognition branch ("face").
pytest.importorskip("jaxvision._src.data.faces")


def test_scenes_boxes_landmarks_identities():
    ids = data.sample_identities(10, seed=0)
    scenes = data.generate_face_scenes(
        6,
        ids,
        size=96,
        faces_per_scene=(2, 4),
        face_sizes=(16.0, 40.0),
        real_fraction=0.3,
        identity_range=(5, 10),
        seed=3,
    )
    assert scenes.images.shape == (6, 96, 96, 3) and scenes.images.dtype == np.float32
    assert 0 <= scenes.images.min() and scenes.images.max() <= 1
    n_real = n_generated = 0
    for ann, who in zip(scenes.annotations, scenes.identities, strict=True):
        assert len(ann) == len(who) >= 1
        assert np.all(ann.boxes[:, 2:] > ann.boxes[:, :2]) and np.all(ann.boxes >= 0)
        assert np.all(ann.boxes <= 96)
        for box, lm, valid, identity in zip(
            ann.boxes, ann.landmarks, ann.landmark_valid, who, strict=True
        ):
            if not valid:
                assert identity == -1
                n_real += 1
                continue
            assert 5 <= identity < 10
            n_generated += 1
            inside = (lm >= box[:2] - 1) & (lm <= box[2:] + 1)
            if np.all(box[:2] > 0) and np.all(box[2:] < 96):  # not clipped by the border
                assert inside.all()
            # Eyes above the mouth, left eye left of the right one (in the face's frame).
            assert lm[0, 1] < lm[3, 1] + 0.3 * (box[3] - box[1])
    assert n_real >= 1 and n_generated >= 1
    again = data.generate_face_scenes(
        6,
        ids,
        size=96,
        faces_per_scene=(2, 4),
        face_sizes=(16.0, 40.0),
        real_fraction=0.3,
        identity_range=(5, 10),
        seed=3,
    )
    np.testing.assert_array_equal(again.images, scenes.images)
