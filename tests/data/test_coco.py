"""COCO export, strict reading, bucketed batches and pycocotools evaluation."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxvision import data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    dataset = data.shapes_dataset(24, split="val", seed=5, max_objects=3)
    folder = tmp_path_factory.mktemp("shapes_coco")
    path = data.export_coco(dataset, folder)
    return dataset, path, folder / "images"


def test_export_then_read_gives_identical_boxes_and_labels(exported):
    dataset, path, image_dir = exported
    coco = data.read_coco_detection(path, image_dir)
    assert coco.class_names == dataset.class_names
    np.testing.assert_array_equal(coco.image_ids, dataset.image_ids)
    np.testing.assert_array_equal(coco.category_ids, [1, 2, 3])
    for i in range(len(dataset)):
        np.testing.assert_array_equal(coco.boxes[i], dataset.boxes[i][dataset.mask[i]])
        np.testing.assert_array_equal(coco.labels[i], dataset.labels[i][dataset.mask[i]])
        np.testing.assert_array_equal(coco.read_image(i), dataset.images[i])


def test_batches_match_the_in_memory_targets(exported):
    dataset, path, image_dir = exported
    coco = data.read_coco_detection(path, image_dir)
    batches = list(data.coco_batches(coco, 10, max_boxes=3))
    assert [b["images"].shape for b in batches] == [(10, 64, 64, 3)] * 3
    valid = np.concatenate([b["valid"] for b in batches])
    assert valid.sum() == 24 and not valid[24:].any()
    merged = {k: np.concatenate([b[k] for b in batches])[:24] for k in batches[0]}
    ref = data.detection_targets(dataset)
    for key in ("images", "pixel_mask", "labels", "mask", "image_ids", "sizes"):
        np.testing.assert_array_equal(merged[key], ref[key])
    # cxcywh normalised by the image size, from the xyxy pixel boxes by hand.
    x0, y0, x1, y1 = np.moveaxis(dataset.boxes.astype(np.float64), -1, 0)
    hand = np.stack([(x0 + x1) / 128, (y0 + y1) / 128, (x1 - x0) / 64, (y1 - y0) / 64], -1)
    np.testing.assert_allclose(merged["boxes"], hand * dataset.mask[..., None], atol=1e-7)


def _write(folder, coco, sizes=None):
    (folder / "img").mkdir(exist_ok=True)
    for im in coco.get("images", []):
        if isinstance(im, dict) and "file_name" in im:
            h, w = (sizes or {}).get(im["file_name"], (int(im["height"]), int(im["width"])))
            Image.fromarray(np.full((h, w, 3), 50, np.uint8)).save(folder / "img" / im["file_name"])
    path = folder / "ann.json"
    path.write_text(json.dumps(coco))
    return path, folder / "img"


def _coco():
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 40, "width": 60},
            {"id": 2, "file_name": "b.png", "height": 100, "width": 70},
            {"id": 3, "file_name": "c.png", "height": 20, "width": 20},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 9, "bbox": [0, 0, 70, 100], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 7, "bbox": [5, 5, 10, 10], "iscrowd": 1},
            {"id": 4, "image_id": 1, "category_id": 9, "bbox": [50.5, 30, 10, 10]},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 9, "name": "dog"}],
    }


def test_reader_on_mixed_sizes_buckets_and_crowds(tmp_path):
    path, image_dir = _write(tmp_path, _coco())
    coco = data.read_coco_detection(path, image_dir)
    np.testing.assert_array_equal(coco.category_ids, [7, 9])
    assert coco.class_names == ("cat", "dog")
    np.testing.assert_array_equal(coco.labels[0], [0, 1])
    np.testing.assert_allclose(coco.boxes[0], [[10, 5, 30, 15], [50.5, 30, 60, 40]])  # clipped
    np.testing.assert_array_equal(coco.labels[1], [1])  # the crowd region is no target
    assert coco.labels[2].shape == (0,)
    batches = list(data.coco_batches(coco, 2, max_boxes=2, buckets=(64, 128)))
    sides = sorted(b["images"].shape[1] for b in batches)
    assert sides == [64, 128]
    small = next(b for b in batches if b["images"].shape[1] == 64)
    assert small["valid"].tolist() == [True, True]
    j = small["image_ids"].tolist().index(1)
    assert small["pixel_mask"][j].sum() == 40 * 60 and small["pixel_mask"][j, :40, :60].all()
    np.testing.assert_allclose(small["boxes"][j, 0], [20 / 60, 10 / 40, 20 / 60, 10 / 40])
    big = next(b for b in batches if b["images"].shape[1] == 128)
    assert big["valid"].tolist() == [True, False] and big["image_ids"][1] == -1
    with pytest.raises(ValueError, match="max_boxes=1"):
        list(data.coco_batches(coco, 2, max_boxes=1))
    with pytest.raises(ValueError, match="largest bucket 64"):
        list(data.coco_batches(coco, 2, max_boxes=2, buckets=(64,)))


def _set(path, value):
    def edit(coco):
        *keys, last = path
        node = coco
        for k in keys:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
        return coco

    return edit


_DELETE = object()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            _set(("annotations", 1, "bbox"), _DELETE),
            r"annotations\[1\] \(id=2\): field 'bbox': missing",
        ),
        (_set(("annotations", 0, "bbox"), [1, 2, 3]), r"annotations\[0\] \(id=1\): field 'bbox'"),
        (_set(("annotations", 0, "bbox"), [1, 2, -3, 4]), r"annotations\[0\].*'bbox'.*> 0"),
        (_set(("annotations", 0, "bbox"), [50, 5, 20, 10]), r"annotations\[0\].*'bbox'.*outside"),
        (_set(("annotations", 0, "bbox"), [1, 2, "3", 4]), r"annotations\[0\].*'bbox'"),
        (_set(("annotations", 2, "image_id"), 42), r"annotations\[2\] \(id=3\): field 'image_id'"),
        (_set(("annotations", 3, "category_id"), 8), r"annotations\[3\] \(id=4\): field 'categ"),
        (_set(("annotations", 3, "id"), 1), r"annotations\[3\] \(id=1\): field 'id': duplicate"),
        (_set(("annotations", 0, "iscrowd"), 2), r"annotations\[0\].*'iscrowd'"),
        (_set(("images", 1, "width"), "70"), r"images\[1\] \(id=2\): field 'width'"),
        (_set(("images", 2, "id"), 1), r"images\[2\] \(id=1\): field 'id': duplicate"),
        (_set(("images", 0, "file_name"), _DELETE), r"images\[0\] \(id=1\): field 'file_name'"),
        (_set(("categories", 1, "name"), None), r"categories\[1\]: field 'name'"),
        (_set(("categories",), {}), r"top level: field 'categories'"),
    ],
)
def test_malformed_file_names_file_record_and_field(tmp_path, edit, match):
    path, image_dir = _write(tmp_path, edit(_coco()))
    with pytest.raises(data.CocoFormatError, match=match) as info:
        data.read_coco_detection(path, image_dir)
    assert str(path) in str(info.value)


def test_missing_or_wrongly_sized_image_and_bad_json_are_named(tmp_path):
    path, image_dir = _write(tmp_path, _coco())
    (image_dir / "c.png").unlink()
    with pytest.raises(data.CocoFormatError, match=r"images\[2\] \(id=3\): field 'file_name'"):
        data.read_coco_detection(path, image_dir)
    path, image_dir = _write(tmp_path, _coco(), sizes={"c.png": (21, 20)})
    coco = data.read_coco_detection(path, image_dir)
    with pytest.raises(data.CocoFormatError, match=r"images\[2\] \(id=3\).*'height'/'width'"):
        coco.read_image(2)
    path.write_text("{not json")
    with pytest.raises(data.CocoFormatError, match="not valid JSON"):
        data.read_coco_detection(path, image_dir)


def test_perfect_predictions_score_ap_one(exported):
    dataset, path, image_dir = exported
    coco = data.read_coco_detection(path, image_dir)
    dets = data.detections_to_coco(
        dataset.image_ids,
        dataset.boxes,
        dataset.mask.astype(np.float32),
        np.maximum(dataset.labels, 0),
        coco.category_ids,
    )
    assert len(dets) == dataset.mask.sum()
    stats = data.coco_evaluate(coco, dets)
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)


def test_ap_at_a_known_iou_and_wrong_class(tmp_path):
    # One 20x20 ground-truth box; a prediction shifted by 4 px has IoU 320/480 = 2/3: a hit
    # at the IoU thresholds 0.5 .. 0.65, a miss from 0.7 on, so AP = 4/10, AP50 = 1, AP75 = 0.
    gt = {
        "images": [{"id": 1, "width": 64, "height": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    hit = [{"image_id": 1, "category_id": 1, "bbox": [14, 10, 20, 20], "score": 0.9}]
    stats = data.coco_evaluate(gt, hit)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(0.0)
    assert stats["AP"] == pytest.approx(0.4)
    wrong = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.9}]
    assert data.coco_evaluate(gt, wrong)["AP"] == pytest.approx(0.0)
    assert data.coco_evaluate(gt, [])["AP50"] == 0.0


def test_detections_to_coco_converts_to_pixel_xywh():
    dets = data.detections_to_coco(
        np.array([5, 6]),
        np.array([[[20, 15, 60, 25], [-5, -5, 30, 50]], [[1, 1, 5, 5], [0, 0, 1, 1]]]),
        np.array([[0.8, 0.2], [0.3, 0.3]]),
        np.array([[1, 0], [0, 0]]),
        np.array([11, 12]),
        sizes=np.array([[40, 80], [10, 10]]),
        valid=np.array([True, False]),
        score_threshold=0.1,
    )
    assert dets == [
        {"image_id": 5, "category_id": 12, "bbox": [20.0, 15.0, 40.0, 10.0], "score": 0.8},
        {"image_id": 5, "category_id": 11, "bbox": [0.0, 0.0, 30.0, 40.0], "score": 0.2},
    ]
    with pytest.raises(ValueError, match="boxes"):
        data.detections_to_coco([1], np.zeros((1, 4)), np.zeros(1), np.zeros(1), [1])


def test_missing_iscrowd_and_area_are_filled_by_one_rule_then_evaluate(tmp_path):
    # Before: the reader accepted these records and coco_evaluate raised KeyError hours
    # later. Rule: iscrowd defaults to 0, area to the box's w * h (what export_coco writes).
    coco = _coco()
    for ann in coco["annotations"]:
        ann.pop("iscrowd", None)
        ann.pop("area", None)
    path, image_dir = _write(tmp_path, coco)
    ds = data.read_coco_detection(path, image_dir)
    anns = ds.coco["annotations"]
    assert [a["iscrowd"] for a in anns] == [0, 0, 0, 0]
    assert [a["area"] for a in anns] == [200.0, 7000.0, 100.0, 100.0]
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1}
        for a in coco["annotations"]
    ]
    assert data.coco_evaluate(ds, dets)["AP"] == pytest.approx(1.0)
    # A parsed dict or a path goes through the same rule.
    assert data.coco_evaluate(path, dets)["AP"] == pytest.approx(1.0)
    assert data.coco_evaluate(json.loads(path.read_text()), dets)["AP"] == pytest.approx(1.0)
    bad = _coco()
    bad["annotations"][0]["area"] = "big"
    path, image_dir = _write(tmp_path, bad)
    with pytest.raises(data.CocoFormatError, match=r"annotations\[0\] \(id=1\): field 'area'"):
        data.read_coco_detection(path, image_dir)


@pytest.mark.parametrize("bbox", [[50.5, 5, 0.4, 4], [-0.9, 5, 0.5, 4], [5, 40.2, 4, 0.5]])
def test_the_tolerance_band_never_stores_an_inverted_box(tmp_path, bbox):
    # Before: [50.5, 5, 0.4, 4] in a 50-px-wide image was stored with x1 = 50 < x0 = 50.5.
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox}],
        "categories": [{"id": 1, "name": "a"}],
    }
    path, image_dir = _write(tmp_path, coco)
    with pytest.raises(data.CocoFormatError, match=r"annotations\[0\].*'bbox'.*no area inside"):
        data.read_coco_detection(path, image_dir)
    coco["annotations"][0]["bbox"] = [49.5, 39.5, 1.4, 1.2]  # overhangs by < 1 px: clipped
    path, image_dir = _write(tmp_path, coco)
    box = data.read_coco_detection(path, image_dir).boxes[0][0]
    np.testing.assert_allclose(box, [49.5, 39.5, 50, 40])
    assert box[2] > box[0] and box[3] > box[1]


def test_truncated_image_and_non_utf8_file_name_the_file_and_record(tmp_path):
    path, image_dir = _write(tmp_path, _coco())
    png = (image_dir / "b.png").read_bytes()
    (image_dir / "b.png").write_bytes(png[: len(png) // 2])
    ds = data.read_coco_detection(path, image_dir)
    with pytest.raises(data.CocoFormatError, match=r"images\[1\] \(id=2\).*b\.png") as info:
        ds.read_image(1)
    assert str(path) in str(info.value)
    path.write_bytes(json.dumps(_coco()).replace("dog", "d\u00f6g").encode("latin-1"))
    with pytest.raises(data.CocoFormatError, match="UTF-8") as info:
        data.read_coco_detection(path, image_dir)
    assert str(path) in str(info.value)


def test_detections_to_coco_drops_non_finite_and_padding_with_a_count():
    # Before: NaN boxes were exported and label -1 became the last category (12).
    boxes = np.array([[[1, 1, 5, 5], [np.nan, 1, 5, 5], [1, 1, 6, 6], [2, 2, 3, 3]]], float)
    with pytest.warns(RuntimeWarning, match="left out 3 of 4"):
        dets = data.detections_to_coco(
            np.array([5]),
            boxes,
            np.array([[0.9, 0.8, np.nan, 0.7]]),
            np.array([[0, 1, 1, -1]]),
            np.array([11, 12]),
        )
    assert dets == [{"image_id": 5, "category_id": 11, "bbox": [1.0, 1.0, 4.0, 4.0], "score": 0.9}]
    with pytest.raises(ValueError, match="labels"):
        data.detections_to_coco([5], boxes, np.ones((1, 4)), np.full((1, 4), 2), [11, 12])
