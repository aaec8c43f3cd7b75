"""grid_anchors against RetinaFace's PriorBox loops; counts and the stride check."""

import numpy as np
import pytest

from jaxvision import boxes
from tests.boxes import face_reference as ref


def test_retinaface_count_at_640():
    # biubug6's port: 80*80*2 + 40*40*2 + 20*20*2 = 16,800.
    assert boxes.grid_anchors(640).shape == (16800, 4)
    assert boxes.grid_anchors((480, 640)).shape == (2 * (60 * 80 + 30 * 40 + 15 * 20), 4)


@pytest.mark.parametrize(
    "size, strides, sizes",
    [
        ((64, 96), (8, 16, 32), ((16, 32), (64, 128), (256, 512))),
        ((32, 32), (4, 8), ((6,), (12.5,))),
        ((128, 64), (16, 32, 64), ((20, 30, 40), (50, 60, 70), (80, 90, 100))),
    ],
)
def test_against_prior_box_loops(size, strides, sizes):
    got = np.asarray(boxes.grid_anchors(size, strides=strides, sizes=sizes))
    want = ref.prior_boxes(*size, strides, sizes)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * max(size))


def test_formats_agree():
    xyxy = boxes.grid_anchors(64)
    cxcywh = boxes.grid_anchors(64, fmt="cxcywh")
    np.testing.assert_allclose(boxes.box_convert(cxcywh, "cxcywh", "xyxy"), xyxy, atol=1e-4)


@pytest.mark.parametrize("size", [(100, 640), (640, 650), 36])
def test_size_not_divisible_by_largest_stride(size):
    with pytest.raises(ValueError, match=r"image_size.*divisible by the largest stride 32"):
        boxes.grid_anchors(size)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strides": (8, 16), "sizes": ((16,),)}, "one sequence of anchor sizes per stride"),
        ({"strides": (8, 0), "sizes": ((16,), (32,))}, "strides"),
        ({"strides": (8,), "sizes": ((-1.0,),)}, "positive sizes"),
        ({"fmt": "xy"}, "fmt"),
    ],
)
def test_bad_options_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        boxes.grid_anchors(64, **kwargs)
