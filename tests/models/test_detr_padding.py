"""DETR on padded batches: padding is zero after normalising, as official DETR and HF.

What the output on the real region depends on (docs/detr.md): the real pixels, the
``pixel_mask`` and the padded canvas (its size and where the real region sits), because
convolutions near the border of the real region see the padded cells' features, in
jaxvision as in every DETR. It does not depend on the values the padded pixels hold.
"""

import functools
import importlib.util
import json
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxvision import data, models, parallel

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, images, mask):
    out = nnx.merge(graphdef, state)(images, mask)
    return out["logits"], out["boxes"]


@pytest.fixture(scope="module")
def tiny():
    model = models.detr_tiny(num_classes=3, rngs=nnx.Rngs(0))
    return nnx.split(model)


def test_padded_pixel_values_do_not_change_the_output(tiny):
    # Before: logits moved by up to 0.6 with the padding value (the convolutions saw it).
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 64, 64, 3)).astype(np.float32)
    mask = np.ones((2, 64, 64), bool)
    mask[0, 40:] = False
    mask[1, :, 24:] = False
    zero = np.where(mask[..., None], images, 0.0)
    ref = _forward(*tiny, zero, mask)
    for fill in (-2.1, 7.0, np.nan):
        filled = np.where(mask[..., None], images, np.float32(fill))
        for got, want in zip(_forward(*tiny, filled, mask), ref, strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_the_real_region_depends_on_the_canvas_size(tiny):
    # Documented: the same real pixels padded to another canvas give other outputs
    # (the padded cells' features reach the real region through the convolutions).
    rng = np.random.default_rng(1)
    real = rng.standard_normal((1, 48, 48, 3)).astype(np.float32)
    small = _forward(*tiny, real, np.ones((1, 48, 48), bool))
    canvas = np.zeros((1, 96, 96, 3), np.float32)
    canvas[:, :48, :48] = real
    mask = np.zeros((1, 96, 96), bool)
    mask[:, :48, :48] = True
    big = _forward(*tiny, canvas, mask)
    assert np.abs(np.asarray(small[0]) - np.asarray(big[0])).max() > 1e-3


def _load_train_detr():
    if "train_detr" not in sys.modules:
        sys.path.insert(0, str(EXPERIMENTS))
        spec = importlib.util.spec_from_file_location("train_detr", EXPERIMENTS / "train_detr.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["train_detr"] = module
        spec.loader.exec_module(module)
    return sys.modules["train_detr"]


@pytest.mark.torch
def test_hf_parity_on_a_padded_batch_through_the_evaluation_input_path(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tests.models.test_detr_weights import _hf_model, _numpy_state

    # Two uint8 images of different sizes; HF pads both to 64 x 64, the bucket here.
    rng = np.random.default_rng(2)
    shapes = [(64, 40), (44, 64)]
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    # HF's way: rescale, normalise with the ImageNet statistics, then pad with 0.
    processor = transformers.DetrImageProcessor(do_resize=False, do_pad=True)
    hf_in = processor(images=pictures, return_tensors="pt")
    hf = _hf_model("sine")
    with torch.no_grad():
        hf_out = hf(pixel_values=hf_in["pixel_values"], pixel_mask=hf_in["pixel_mask"])
    # jaxvision's way, as experiments/evaluate_detr.py: a COCO folder read back, bucketed
    # uint8 batches (padded with 0 before normalising), and train_detr's predict function.
    folder = tmp_path / "coco"
    (folder / "images").mkdir(parents=True)
    coco_json = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    for i, picture in enumerate(pictures):
        name = f"{i}.png"
        Image.fromarray(picture).save(folder / "images" / name)
        h, w = picture.shape[:2]
        coco_json["images"].append({"id": i + 1, "file_name": name, "height": h, "width": w})
    (folder / "ann.json").write_text(json.dumps(coco_json))
    coco = data.read_coco_detection(folder / "ann.json", folder / "images")
    (batch,) = data.coco_batches(coco, 2, max_boxes=1, buckets=(64,))
    np.testing.assert_array_equal(batch["pixel_mask"], hf_in["pixel_mask"].numpy() == 1)
    model = models.load_hf_detr(_numpy_state(hf), hf.config.to_dict())
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    mesh = parallel.make_mesh(2)
    predict = _load_train_detr().make_predict(graphdef, mesh)
    inputs = parallel.shard_batch({k: batch[k] for k in ("images", "pixel_mask", "sizes")}, mesh)
    ours = jax.tree.map(np.asarray, jax.device_get(predict(params, rest, **inputs)))
    sizes = torch.tensor(batch["sizes"])
    theirs = processor.post_process_object_detection(hf_out, threshold=-1.0, target_sizes=sizes)
    for b in range(2):  # HF keeps every query, in query order
        np.testing.assert_allclose(ours["scores"][b], theirs[b]["scores"].numpy(), rtol=1e-5)
        np.testing.assert_array_equal(ours["labels"][b], theirs[b]["labels"].numpy())
        # Pixels of a 64-px canvas: 1e-5 of the normalised box.
        np.testing.assert_allclose(
            ours["boxes"][b], theirs[b]["boxes"].numpy(), rtol=1e-5, atol=64e-5
        )
