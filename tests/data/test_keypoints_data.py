"""Generated figures, COCO person-keypoints export / read, top-down crops and flips, and
keypoint AP from the library's evaluator against pycocotools run directly."""

import contextlib
import io

import numpy as np
import pytest

from jaxvision._src.data.coco_keypoints_eval import coco_keypoints_evaluate, keypoints_to_coco
from jaxvision._src.data.keypoints_coco import read_coco_keypoints, topdown_batches, topdown_crops
from jaxvision._src.data.keypoints_generated import (
    export_coco_keypoints,
    keypoints_dataset,
    keypoints_to_coco_dict,
)
from jaxvision._src.keypoints.constants import COCO_FLIP_PAIRS
from jaxvision._src.keypoints.crop import keypoints_from_crop


@pytest.fixture(scope="module")
def ds():
    return keypoints_dataset(12, image_size=64, seed=0)


def test_generated_keypoints_follow_coco_flags(ds):
    kp = ds.keypoints
    v = kp[..., 2]
    assert set(np.unique(v)) <= {0.0, 1.0, 2.0} and (v == 2).any() and (v == 1).any()
    np.testing.assert_array_equal(kp[v == 0][:, :2], 0.0)  # unlabelled: (0, 0, 0)
    inside = kp[v > 0][:, :2]
    assert (inside >= 0).all() and (inside < 64).all()
    assert (ds.areas > 0).all() and len(ds.person_image) >= len(ds)
    again = keypoints_dataset(12, image_size=64, seed=0)
    np.testing.assert_array_equal(again.images, ds.images)
    other = keypoints_dataset(12, image_size=64, seed=0, split="val")
    assert not np.array_equal(other.images, ds.images)


def test_export_and_read_round_trip(ds, tmp_path):
    path = export_coco_keypoints(ds, tmp_path)
    back = read_coco_keypoints(path, tmp_path / "images", min_keypoints=0)
    np.testing.assert_array_equal(np.stack(back.images), ds.images)
    np.testing.assert_allclose(back.keypoints, ds.keypoints, rtol=1e-6)
    np.testing.assert_allclose(back.boxes, ds.boxes)
    np.testing.assert_allclose(back.areas, ds.areas)


def test_topdown_crops_map_back_to_the_image_and_flip_swaps(ds):
    crops = topdown_crops(ds, (32, 24))
    assert crops.images.shape == (len(ds.boxes), 32, 24, 3)
    labelled = ds.keypoints[..., 2] > 0
    back = np.asarray(keypoints_from_crop(crops.keypoints[..., :2], crops.matrices))
    np.testing.assert_allclose(back[labelled], ds.keypoints[..., :2][labelled], atol=1e-3)
    plain = next(topdown_batches(crops, 8, shuffle=False, flip=False))
    flipped = next(topdown_batches(crops, 8, shuffle=False, flip=True))
    which = np.any(flipped["images"] != plain["images"], axis=(1, 2, 3))
    assert which.any() and not which.all()
    i = int(np.flatnonzero(which)[0])
    np.testing.assert_array_equal(flipped["images"][i], plain["images"][i][:, ::-1])
    a, b = COCO_FLIP_PAIRS[2]  # the shoulders
    np.testing.assert_allclose(flipped["keypoints"][i, a, 0], 24 - plain["keypoints"][i, b, 0],
                               rtol=1e-6)
    np.testing.assert_array_equal(flipped["weights"][i, a], plain["weights"][i, b])


def _pycocotools_ap(gt, results):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dict(gt, info={}, licenses=[])
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_keypoint_ap_equals_pycocotools_directly(ds):
    pytest.importorskip("pycocotools")
    gt = keypoints_to_coco_dict(ds)
    rng = np.random.default_rng(0)
    n = len(ds.boxes)
    pred = ds.keypoints[..., :2] + rng.normal(0, 1.5, (n, 17, 2))
    results = keypoints_to_coco(ds.image_ids[ds.person_image], pred, rng.uniform(size=n))
    ours = coco_keypoints_evaluate(gt, results)
    want = _pycocotools_ap(gt, results)
    np.testing.assert_allclose(list(ours.values()), want, rtol=1e-12)
    assert 0.0 < ours["AP"] < 1.0
    perfect = keypoints_to_coco(ds.image_ids[ds.person_image], ds.keypoints[..., :2], np.ones(n))
    assert coco_keypoints_evaluate(gt, perfect)["AP"] == pytest.approx(1.0)
    assert coco_keypoints_evaluate(gt, [])["AP"] == 0.0
