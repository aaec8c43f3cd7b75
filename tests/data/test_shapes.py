"""The procedurally generated shapes dataset."""

import numpy as np
import pytest

from jaxvision import data


@pytest.fixture(scope="module")
def train():
    return data.shapes_dataset(300, seed=3, max_objects=4)


def test_shapes_and_dtypes(train):
    assert train.images.shape == (300, 64, 64, 3) and train.images.dtype == np.uint8
    assert train.boxes.shape == (300, 4, 4) and train.boxes.dtype == np.float32
    assert train.labels.shape == train.mask.shape == (300, 4)
    assert train.class_names == ("square", "circle", "triangle") and train.num_classes == 3
    np.testing.assert_array_equal(train.image_ids, np.arange(1, 301))


def test_every_image_has_objects_and_padding_is_at_the_end(train):
    counts = train.mask.sum(1)
    assert counts.min() >= 1 and counts.max() <= 4
    assert len(np.unique(counts)) == 4  # 1..4 objects all occur
    np.testing.assert_array_equal(train.mask, np.arange(4)[None] < counts[:, None])
    assert np.all(train.labels[~train.mask] == -1)
    assert np.all(train.boxes[~train.mask] == 0)
    assert set(np.unique(train.labels[train.mask])) == {0, 1, 2}


def test_boxes_are_the_exact_extent_of_distinct_coloured_pixels(train):
    # Independent check: the pixels inside a box that differ from the background noise
    # reach every edge of the box, and boxes of one image never overlap.
    for i in range(40):
        img = train.images[i].astype(int)
        boxes = train.boxes[i][train.mask[i]].astype(int)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            patch = img[y0:y1, x0:x1]
            # The shape colour is the most common pixel value inside its box.
            values, counts = np.unique(patch.reshape(-1, 3), axis=0, return_counts=True)
            colour = values[np.argmax(counts)]
            on = np.all(patch == colour, -1)
            assert on[0].any() and on[-1].any() and on[:, 0].any() and on[:, -1].any()
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                ax0, ay0, ax1, ay1 = boxes[a]
                bx0, by0, bx1, by1 = boxes[b]
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def test_class_shapes_fill_their_boxes_as_expected(train):
    # square fills its box, circle ~pi/4, triangle ~1/2.
    fill = {0: [], 1: [], 2: []}
    for i in range(100):
        img = train.images[i].astype(int)
        for (x0, y0, x1, y1), lab in zip(
            train.boxes[i][train.mask[i]].astype(int), train.labels[i][train.mask[i]], strict=True
        ):
            patch = img[y0:y1, x0:x1].reshape(-1, 3)
            values, counts = np.unique(patch, axis=0, return_counts=True)
            fill[int(lab)].append(counts.max() / len(patch))
    assert np.mean(fill[0]) > 0.99
    assert 0.7 < np.mean(fill[1]) < 0.85
    assert 0.45 < np.mean(fill[2]) < 0.65


def test_deterministic_for_a_seed_and_splits_differ():
    a = data.shapes_dataset(20, seed=7)
    b = data.shapes_dataset(20, seed=7)
    for name in ("images", "boxes", "labels", "mask"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    val = data.shapes_dataset(20, seed=7, split="val")
    other = data.shapes_dataset(20, seed=8)
    assert not np.array_equal(a.images, val.images)
    assert not np.array_equal(a.images, other.images)


def test_size_options():
    d = data.shapes_dataset(10, image_size=32, max_objects=2, min_size=6, max_size=10)
    assert d.images.shape == (10, 32, 32, 3)
    wh = (d.boxes[..., 2:] - d.boxes[..., :2])[d.mask]
    assert wh.min() >= 5 and wh.max() <= 10  # circles lose a pixel row at most


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_images": 0}, ValueError, "num_images"),
        ({"num_images": 2.5}, TypeError, "num_images"),
        ({"num_images": 2, "split": "test"}, ValueError, "split"),
        ({"num_images": 2, "max_objects": 0}, ValueError, "max_objects"),
        ({"num_images": 2, "min_size": 30, "max_size": 20}, ValueError, "min_size"),
        ({"num_images": 2, "noise": -1.0}, ValueError, "noise"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        data.shapes_dataset(**kwargs)
