"""The DETR set criterion against HF transformers, scipy and hand-derived values."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from jaxvision import matching, models

C = 7  # object classes; logits have C + 1 columns, no-object last

# Jitted functions shared by the tests, so that equal shapes compile once.
_LOSS = jax.jit(functools.partial(models.detr_loss, num_classes=C))
_LOSS_AND_GRAD = jax.jit(jax.value_and_grad(lambda o, t: models.detr_loss(o, t, num_classes=C)[0]))


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


def _hf_loss(outputs, targets, *, aux, grads=False):
    """HF transformers' ForObjectDetectionLoss in float64 on the same predictions.

    With ``grads``, also the gradients with respect to the ``[L, B, Q, ...]`` logits and
    boxes of every layer (the final layer last).
    """
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
        torch.tensor(
            np.stack([np.asarray(x[key]) for x in layers]),
            dtype=torch.float64,
            requires_grad=grads,
        )
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
    terms = {k: v.item() for k, v in loss_dict.items()}
    if grads:
        loss.backward()
        return loss.item(), terms, logits.grad.numpy(), boxes.grad.numpy()
    return loss.item(), terms


@pytest.mark.torch
@pytest.mark.parametrize("aux", [False, True])
def test_loss_equals_hf_transformers(aux):
    outputs, targets = _batch(0, layers=3)
    want, want_terms = _hf_loss(outputs, targets, aux=aux)
    loss_fn = (
        _LOSS
        if aux
        else jax.jit(functools.partial(models.detr_loss, num_classes=C, aux_loss=False))
    )
    got, terms = loss_fn(outputs, targets)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert set(want_terms) == set(terms) - {k for k in terms if k.startswith("class_error")}
    for key, value in want_terms.items():
        np.testing.assert_allclose(float(terms[key]), value, rtol=1e-5, atol=1e-6, err_msg=key)
    if aux:
        # bfloat16 predictions are accepted; the loss is computed in float32.
        half = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), outputs)
        got_half, _ = loss_fn(half, targets)
        assert got_half.dtype == jnp.float32
        np.testing.assert_allclose(float(got_half), want, rtol=2e-2)


@pytest.mark.torch
def test_gradients_equal_hf_transformers():
    outputs, targets = _batch(9, layers=3)
    want, _, want_dlogits, want_dboxes = _hf_loss(outputs, targets, aux=True, grads=True)
    got, grads = _LOSS_AND_GRAD(outputs, targets)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    layers = [*grads["aux"], grads]
    for key, w in (("logits", want_dlogits), ("boxes", want_dboxes)):
        g = np.stack([np.asarray(layer[key]) for layer in layers])
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7, err_msg=key)


@pytest.mark.torch
def test_scipy_matcher_swaps_in_and_agrees_with_hf():
    outputs, targets = _batch(1, layers=2, counts=(6, 2, 0, 4))
    want, _ = _hf_loss(outputs, targets, aux=True)
    got, _ = jax.jit(functools.partial(models.detr_loss, num_classes=C, matcher=_scipy_matcher))(
        outputs, targets
    )
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.torch
def test_more_targets_than_queries_agrees_with_hf():
    # 4 queries, up to 6 targets: every query is matched, every target counts in N.
    outputs, targets = _batch(7, q=4, layers=2, counts=(6, 4, 0, 5))
    want, want_terms = _hf_loss(outputs, targets, aux=True)
    got, terms = _LOSS(outputs, targets)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    np.testing.assert_allclose(
        float(terms["cardinality_error"]), want_terms["cardinality_error"], rtol=1e-6
    )


def test_loss_is_invariant_to_the_order_of_queries_and_target_slots():
    outputs, targets = _batch(8, layers=3)
    rng = np.random.default_rng(8)
    q_perm = rng.permutation(outputs["logits"].shape[1])
    t_perm = rng.permutation(targets["mask"].shape[1])  # moves padding between real slots
    shuffled_outputs = jax.tree.map(lambda x: x[:, q_perm], outputs)
    shuffled_targets = jax.tree.map(lambda x: x[:, t_perm], targets)
    want, want_terms = _LOSS(outputs, targets)
    got, terms = _LOSS(shuffled_outputs, shuffled_targets)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    for key in want_terms:
        np.testing.assert_allclose(float(terms[key]), float(want_terms[key]), rtol=1e-5, atol=1e-6)


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
    got = models.detr_matching_costs(outputs["logits"], outputs["boxes"], lab, t)
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
    loss, terms = _LOSS(outputs, targets)
    # Every query is right with probability 1 / (1 + 7 e^-8): CE = log(1 + 7 e^-8).
    np.testing.assert_allclose(float(terms["loss_ce"]), np.log1p(7 * np.exp(-big)), rtol=1e-3)
    assert float(terms["loss_bbox"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["loss_giou"]) == pytest.approx(0.0, abs=1e-5)
    assert float(terms["cardinality_error"]) == 0.0
    assert float(terms["class_error"]) == 0.0
    assert float(loss) == pytest.approx(float(terms["loss_ce"]), abs=1e-5)
    # The greedy matcher swaps in; on this unambiguous case it finds the same matching.
    greedy = jax.jit(
        functools.partial(models.detr_loss, num_classes=C, matcher=matching.greedy_match)
    )
    np.testing.assert_allclose(float(greedy(outputs, targets)[0]), float(loss), rtol=1e-6)

    # Predict everything as no-object: cardinality error |0 - 2| / 2 images = 1, and both
    # matched queries are misclassified.
    logits[0, :, :] = 0.0
    logits[0, :, C] = big
    _, terms = _LOSS({"logits": logits, "boxes": boxes}, targets)
    assert float(terms["cardinality_error"]) == 1.0
    assert float(terms["class_error"]) == 100.0


def test_no_targets_and_degenerate_boxes_give_finite_loss_and_gradients():
    outputs, targets = _batch(3, layers=3, counts=(0, 0, 0, 0))
    degenerate = dict(targets)
    degenerate["mask"] = np.ones_like(targets["mask"])
    degenerate["labels"] = np.zeros_like(targets["labels"])
    boxes = np.array(targets["boxes"])
    boxes[..., :2] = 0.5
    boxes[:, ::2, 2] = 0.0  # zero width
    boxes[:, 1::2, 3] = 0.0  # zero height
    degenerate["boxes"] = boxes

    def flatten_some(layer):  # degenerate predictions too, in every layer
        pred_boxes = np.array(layer["boxes"])
        pred_boxes[:, :3, 2:] = 0.0
        return dict(layer, boxes=pred_boxes)

    pred = dict(flatten_some(outputs), aux=tuple(flatten_some(a) for a in outputs["aux"]))
    for o, t in [(outputs, targets), (pred, degenerate)]:
        loss, grads = _LOSS_AND_GRAD(o, t)
        assert np.isfinite(float(loss))
        for g in jax.tree.leaves(grads):
            assert np.isfinite(np.asarray(g)).all()

    # Without targets the loss is the plain mean no-object CE of every layer.
    loss, _ = _LOSS_AND_GRAD(outputs, targets)
    want = 0.0
    for layer in [*outputs["aux"], outputs]:
        lg = np.asarray(layer["logits"], np.float64)
        logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        want += -logp[..., C].mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_sharded_loss_gradients_and_metrics_average_to_the_single_device_ones():
    """Data parallelism as in training: replicated parameters, batch-sharded data."""
    devices = jax.devices()
    n = len(devices)
    outputs, targets = _batch(4, b=n, layers=2, counts=[i % 4 for i in range(n)])
    mesh = jax.make_mesh((n,), ("data",), (jax.sharding.AxisType.Auto,), devices=devices)
    spec = jax.P("data")
    data = jax.device_put((outputs, targets), jax.NamedSharding(mesh, spec))
    # A stand-in "model": predictions are a differentiable function of parameters.
    params = {"shift": jnp.linspace(-1.0, 1.0, C + 1), "scale": jnp.asarray(0.9)}

    def loss(p, o, t, axis_name=None):
        o = jax.tree.map(lambda x: x * p["scale"], o)
        o = dict(o, logits=o["logits"] + p["shift"])
        o["aux"] = tuple(dict(a, logits=a["logits"] + p["shift"]) for a in o["aux"])
        return models.detr_loss(o, t, num_classes=C, axis_name=axis_name)

    def step(p, o, t):
        # Per-device gradients (as DDP): parameters marked varying, then averaged by pmean.
        p = jax.tree.map(lambda x: jax.lax.pcast(x, "data", to="varying"), p)
        value, grads = jax.value_and_grad(loss, has_aux=True)(p, o, t, "data")
        return jax.lax.pmean((value, grads), "data")

    sharded_step = jax.shard_map(step, mesh=mesh, in_specs=(jax.P(), spec, spec), out_specs=jax.P())
    want, want_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, outputs, targets)
    got, got_grad = jax.jit(sharded_step)(params, *data)
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5)
    assert set(got[1]) == set(want[1])
    for key in want[1]:
        np.testing.assert_allclose(
            float(got[1][key]), float(want[1][key]), rtol=1e-5, atol=1e-6, err_msg=key
        )
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)
    # Plain jit on batch-sharded arrays (no axis_name) gives the same loss too.
    np.testing.assert_allclose(float(jax.jit(loss)(params, *data)[0]), float(want[0]), rtol=1e-5)


def test_bad_input_raises_at_trace_time():
    outputs, targets = _batch(5, layers=3)
    loss = _LOSS
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
