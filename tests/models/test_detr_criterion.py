"""The DETR set criterion against HF transformers, scipy and hand-derived values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from jaxvision import models

C = 7  # object classes; logits have C + 1 columns, no-object last


def _batch(seed: int, *, b=4, q=10, t=6, layers=1, counts=(3, 0, 6, 1)):
    """Random predictions and padded targets; image 1 has no target."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(layers, b, q, C + 1)).astype(np.float32) * 2
    centre = rng.uniform(0.2, 0.8, size=(layers, b, q, 2))
    size = rng.uniform(0.05, 0.4, size=(layers, b, q, 2))
    boxes = np.concatenate([centre, size], -1).astype(np.float32)
    mask = np.arange(t)[None, :] < np.asarray(counts)[:, None]
    labels = np.where(mask, rng.integers(0, C, size=(b, t)), -1).astype(np.int32)
    tcentre = rng.uniform(0.2, 0.8, size=(b, t, 2))
    tsize = rng.uniform(0.05, 0.4, size=(b, t, 2))
    tboxes = np.where(mask[..., None], np.concatenate([tcentre, tsize], -1), 0.0)
    outputs = {"logits": logits[-1], "boxes": boxes[-1]}
    if layers > 1:
        outputs["aux"] = tuple({"logits": logits[i], "boxes": boxes[i]} for i in range(layers - 1))
    targets = {"labels": labels, "boxes": tboxes.astype(np.float32), "mask": mask}
    return outputs, targets


def _scipy_matcher(costs, target_mask):
    """Exact matching with scipy on the host, as HF's matcher does (a test cross-check)."""

    def solve(c, m):
        qot = np.full(m.shape, -1, np.int32)
        toq = np.full(c.shape[:2], -1, np.int32)
        for i in range(c.shape[0]):
            cols = np.flatnonzero(m[i])
            rows, sel = linear_sum_assignment(c[i][:, cols])
            qot[i, cols[sel]] = rows
            toq[i, rows] = cols[sel]
        return qot, toq

    shapes = (
        jax.ShapeDtypeStruct(target_mask.shape, jnp.int32),
        jax.ShapeDtypeStruct(costs.shape[:2], jnp.int32),
    )
    return jax.pure_callback(solve, shapes, costs, target_mask, vmap_method="sequential")


def _hf_loss(outputs, targets, *, aux):
    """HF transformers' ForObjectDetectionLoss in float64 on the same predictions."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import DetrConfig
    from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss

    layers = [*outputs.get("aux", ()), outputs] if aux else [outputs]
    config = DetrConfig(
        num_labels=C,
        auxiliary_loss=aux,
        decoder_layers=len(layers),
        use_timm_backbone=False,
        use_pretrained_backbone=False,
    )
    logits, boxes = (
        torch.tensor(np.stack([np.asarray(x[key]) for x in layers]), dtype=torch.float64)
        for key in ("logits", "boxes")
    )
    labels = [
        {
            "class_labels": torch.tensor(np.asarray(lab)[np.asarray(m)], dtype=torch.int64),
            "boxes": torch.tensor(np.asarray(bx)[np.asarray(m)], dtype=torch.float64),
        }
        for lab, bx, m in zip(targets["labels"], targets["boxes"], targets["mask"], strict=True)
    ]
    # HF builds its class weights with the default dtype: make it float64 for this call.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loss, loss_dict, _ = ForObjectDetectionLoss(
            logits[-1], labels, "cpu", boxes[-1], config, outputs_class=logits, outputs_coord=boxes
        )
    finally:
        torch.set_default_dtype(default)
    return float(loss), {k: float(v) for k, v in loss_dict.items()}


@pytest.mark.torch
@pytest.mark.parametrize("aux", [False, True])
def test_loss_equals_hf_transformers(aux):
    outputs, targets = _batch(0, layers=3)
    want, want_terms = _hf_loss(outputs, targets, aux=aux)
    loss_fn = jax.jit(functools.partial(models.detr_loss, num_classes=C, aux_loss=aux))
    got, terms = loss_fn(outputs, targets)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert set(want_terms) == set(terms) - {k for k in terms if k.startswith("class_error")}
    for key, value in want_terms.items():
        np.testing.assert_allclose(float(terms[key]), value, rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.torch
def test_scipy_matcher_swaps_in_and_agrees_with_hf():
    outputs, targets = _batch(1, layers=2, counts=(6, 2, 0, 4))
    want, _ = _hf_loss(outputs, targets, aux=True)
    got, _ = jax.jit(functools.partial(models.detr_loss, num_classes=C, matcher=_scipy_matcher))(
        outputs, targets
    )
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def _np_giou(a, b):
    """Pairwise GIoU of cxcywh boxes, float64 NumPy transcription of Rezatofighi et al."""
    a = np.concatenate([a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2], -1)
    b = np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)
    a, b = a[..., :, None, :], b[..., None, :, :]
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a) + area(b) - inter
    hull = np.maximum(a[..., 2:], b[..., 2:]) - np.minimum(a[..., :2], b[..., :2])
    enclose = hull[..., 0] * hull[..., 1]
    return inter / union - (enclose - union) / enclose


def test_matching_cost_matches_numpy_formula():
    outputs, targets = _batch(2)
    logits = np.asarray(outputs["logits"], np.float64)
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    lab = np.clip(targets["labels"], 0, None)
    p, t = np.asarray(outputs["boxes"], np.float64), np.asarray(targets["boxes"], np.float64)
    t = np.where(targets["mask"][..., None], t, [0.5, 0.5, 0.2, 0.2])
    want = (
        -np.take_along_axis(prob, np.broadcast_to(lab[:, None, :], (*prob.shape[:2], 6)), -1)
        + 5 * np.abs(p[:, :, None] - t[:, None]).sum(-1)
        - 2 * _np_giou(p, t)
    )
    got = models.detr_matching_cost(outputs["logits"], outputs["boxes"], lab, t)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_hand_values_for_a_perfect_and_an_empty_image():
    # Image 0: two targets predicted exactly by queries 1 and 2; query 0 says no-object.
    # Image 1: no target at all.
    big = 8.0
    logits = np.zeros((2, 3, C + 1), np.float32)
    logits[0, 0, C] = logits[0, 1, 3] = logits[0, 2, 5] = big
    logits[1, :, C] = big
    tboxes = np.array([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.1]], np.float32)
    boxes = np.full((2, 3, 4), 0.5, np.float32)
    boxes[0, 1:] = tboxes
    outputs = {"logits": logits, "boxes": boxes}
    targets = {
        "labels": np.array([[3, 5], [0, 0]], np.int32),
        "boxes": np.stack([tboxes, np.zeros_like(tboxes)]),
        "mask": np.array([[True, True], [False, False]]),
    }
    loss, terms = jax.jit(functools.partial(models.detr_loss, num_classes=C))(outputs, targets)
    # Every query is right with probability 1 / (1 + 7 e^-8): CE = log(1 + 7 e^-8).
    np.testing.assert_allclose(float(terms["loss_ce"]), np.log1p(7 * np.exp(-big)), rtol=1e-3)
    assert float(terms["loss_bbox"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["loss_giou"]) == pytest.approx(0.0, abs=1e-5)
    assert float(terms["cardinality_error"]) == 0.0
    assert float(terms["class_error"]) == 0.0
    assert float(loss) == pytest.approx(float(terms["loss_ce"]), abs=1e-5)

    # Predict everything as no-object: cardinality error |0 - 2| / 2 images = 1, and both
    # matched queries are misclassified.
    logits[0, :, :] = 0.0
    logits[0, :, C] = big
    _, terms = models.detr_loss({"logits": logits, "boxes": boxes}, targets, num_classes=C)
    assert float(terms["cardinality_error"]) == 1.0
    assert float(terms["class_error"]) == 100.0


def test_no_targets_and_degenerate_boxes_give_finite_loss_and_gradients():
    outputs, targets = _batch(3, layers=2, counts=(0, 0, 0, 0))
    degenerate = dict(targets)
    degenerate["mask"] = np.ones_like(targets["mask"])
    degenerate["labels"] = np.zeros_like(targets["labels"])
    boxes = np.array(targets["boxes"])
    boxes[..., :2] = 0.5
    boxes[:, ::2, 2] = 0.0  # zero width
    boxes[:, 1::2, 3] = 0.0  # zero height
    degenerate["boxes"] = boxes
    pred = dict(outputs)
    pred["boxes"] = np.array(outputs["boxes"])
    pred["boxes"][:, :3, 2:] = 0.0  # degenerate predictions too

    grad_fn = jax.jit(
        jax.value_and_grad(lambda o, t: models.detr_loss(o, t, num_classes=C)[0], allow_int=True)
    )
    for o, t in [(outputs, targets), (pred, degenerate)]:
        loss, grads = grad_fn(o, t)
        assert np.isfinite(float(loss))
        for g in jax.tree.leaves(grads):
            if jnp.issubdtype(g.dtype, jnp.floating):
                assert np.isfinite(np.asarray(g)).all()

    # Without targets the loss is the plain mean no-object CE of every layer.
    loss, _ = grad_fn(outputs, targets)
    want = 0.0
    for layer in [*outputs["aux"], outputs]:
        lg = np.asarray(layer["logits"], np.float64)
        logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        want += -logp[..., C].mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_sharded_loss_averages_to_the_single_device_loss():
    devices = jax.devices()
    n = len(devices)
    outputs, targets = _batch(4, b=n, layers=2, counts=[i % 4 for i in range(n)])
    mesh = jax.make_mesh((n,), ("data",), devices=devices)
    spec = jax.P("data")
    sharded_inputs = jax.device_put((outputs, targets), jax.NamedSharding(mesh, spec))

    def loss(o, t, axis_name=None):
        return models.detr_loss(o, t, num_classes=C, axis_name=axis_name)[0]

    def sharded(o, t):
        local = loss(o, t, axis_name="data")
        return jax.lax.pmean(local, "data")

    sharded_fn = jax.shard_map(
        jax.value_and_grad(sharded), mesh=mesh, in_specs=(spec, spec), out_specs=(jax.P(), spec)
    )
    want, want_grad = jax.jit(jax.value_and_grad(loss))(outputs, targets)
    got, got_grad = jax.jit(sharded_fn)(*sharded_inputs)
    # Plain jit on batch-sharded arrays (no axis_name) gives the same loss too.
    np.testing.assert_allclose(float(jax.jit(loss)(*sharded_inputs)), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        # Each shard's terms are normalised by (global denominator / n), so the gradient of
        # the pmean'd loss with respect to a shard's predictions is the global gradient.
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


def test_bad_input_raises_at_trace_time():
    outputs, targets = _batch(5)
    loss = jax.jit(functools.partial(models.detr_loss, num_classes=C))
    bad = dict(targets, labels=targets["labels"][:3])
    with pytest.raises(ValueError, match="labels"):
        loss(outputs, bad)
    bad = {k: v[:3] for k, v in targets.items()}
    with pytest.raises(ValueError, match="batch size"):
        loss(outputs, bad)
    with pytest.raises(ValueError, match=r"outputs\['boxes'\]"):
        loss(dict(outputs, boxes=outputs["boxes"][..., :3]), targets)
    with pytest.raises(ValueError, match=r"targets\['boxes'\]"):
        loss(outputs, dict(targets, boxes=targets["boxes"][..., :2]))
    with pytest.raises(ValueError, match="num_classes"):
        models.detr_loss(outputs, targets, num_classes=C + 1)
    with pytest.raises(TypeError, match="integer"):
        loss(outputs, dict(targets, labels=targets["labels"].astype(np.float32)))
    with pytest.raises(TypeError, match="mask"):
        loss(outputs, dict(targets, mask=targets["mask"].astype(np.int32)))
    with pytest.raises(ValueError, match=r"aux'\]\[0\]"):
        loss(
            dict(outputs, aux=({"logits": outputs["logits"][:, :5], "boxes": outputs["boxes"]},)),
            targets,
        )

    labels = np.array(targets["labels"])
    labels[0, 0] = C  # the no-object index is not a valid target label
    with pytest.raises(ValueError, match=r"\[0, num_classes=7\)"):
        models.detr_loss(outputs, dict(targets, labels=labels), num_classes=C)
    # Traced label values are unknown at trace time: the loss is NaN instead.
    got, _ = loss(outputs, dict(targets, labels=labels))
    assert np.isnan(float(got))
