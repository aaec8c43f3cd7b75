"""encode_boxes / decode_boxes: float64 SSD formula, exact round trips, jit/vmap/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import boxes
from tests.boxes import face_reference as ref


def _problem(seed, n=500, scale=640.0):
    rng = np.random.default_rng(seed)
    anchors = ref.prior_boxes(640, 640, (8, 16, 32), ((16, 32), (64, 128), (256, 512)))
    anchors = anchors[rng.choice(len(anchors), n)]
    ax, ay, aw, ah = ref.centre_form(anchors)
    # Boxes around their anchors at 0.3x..3x the size, offset by up to one anchor side.
    cx, cy = ax + rng.uniform(-1, 1, n) * aw, ay + rng.uniform(-1, 1, n) * ah
    w, h = aw * rng.uniform(0.3, 3, n), ah * rng.uniform(0.3, 3, n)
    gt = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    return gt.astype(np.float32), anchors.astype(np.float32), scale


@pytest.mark.parametrize("seed", [0, 1])
def test_encode_against_float64(seed):
    gt, anchors, _ = _problem(seed)
    got = np.asarray(boxes.encode_boxes(gt, anchors))
    want = ref.encode_boxes(gt.astype(np.float64), anchors.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("variances", [(0.1, 0.2), (1.0, 1.0)])
def test_round_trip_exact_to_1e5(variances):
    gt, anchors, scale = _problem(2)
    deltas = boxes.encode_boxes(gt, anchors, variances=variances)
    back = np.asarray(boxes.decode_boxes(deltas, anchors, variances=variances))
    # 1e-5 relative to the coordinate magnitude (640 px images).
    np.testing.assert_allclose(back, gt, rtol=1e-5, atol=1e-5 * scale)
    d = np.random.default_rng(3).normal(size=(500, 4)).astype(np.float32)
    again = boxes.encode_boxes(
        boxes.decode_boxes(d, anchors, variances=variances), anchors, variances=variances
    )
    np.testing.assert_allclose(again, d, rtol=1e-5, atol=1e-4)


def test_decode_against_float64_and_formats():
    _, anchors, _ = _problem(4)
    d = np.random.default_rng(5).normal(size=(500, 4)).astype(np.float32)
    want = ref.decode_boxes(d, anchors.astype(np.float64))
    np.testing.assert_allclose(boxes.decode_boxes(d, anchors), want, rtol=1e-5, atol=1e-3)
    cxcywh = boxes.box_convert(anchors, "xyxy", "cxcywh")
    got = boxes.decode_boxes(d, cxcywh, fmt="cxcywh")
    np.testing.assert_allclose(boxes.box_convert(got, "cxcywh", "xyxy"), want, rtol=1e-5, atol=1e-3)


def test_jit_vmap_grad_broadcast():
    gt, anchors, _ = _problem(6, n=12)
    enc = jax.jit(boxes.encode_boxes)(gt, anchors)
    np.testing.assert_allclose(enc, boxes.encode_boxes(gt, anchors), rtol=1e-6, atol=1e-6)
    batched = jax.vmap(boxes.decode_boxes, in_axes=(0, None))(jnp.stack([enc, enc]), anchors)
    np.testing.assert_allclose(batched[1], boxes.decode_boxes(enc, anchors), rtol=1e-6, atol=1e-4)
    # One anchor broadcast against many boxes.
    one = boxes.encode_boxes(gt, anchors[:1])
    np.testing.assert_allclose(one, ref.encode_boxes(gt, anchors[:1]), rtol=1e-5, atol=1e-4)
    g = jax.grad(lambda d: boxes.decode_boxes(d, anchors).sum())(enc)
    assert np.isfinite(np.asarray(g)).all()


def test_bad_input_named():
    with pytest.raises(ValueError, match="`boxes` must have shape"):
        boxes.encode_boxes(jnp.zeros((3, 5)), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="`deltas` must have shape"):
        boxes.decode_boxes(jnp.zeros((3, 2)), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="must broadcast"):
        boxes.encode_boxes(jnp.zeros((3, 4)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="variances"):
        boxes.decode_boxes(jnp.zeros((3, 4)), jnp.ones((3, 4)), variances=(0.1, 0.0))
