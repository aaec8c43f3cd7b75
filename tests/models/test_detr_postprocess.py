"""DETR post-processing against HF transformers and NumPy."""

import functools

import jax
import numpy as np
import pytest

from jaxvision import models

B, Q, C = 3, 12, 5


def _outputs(seed: int):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(B, Q, C + 1)) * 3).astype(np.float32)
    boxes = np.concatenate(
        [rng.uniform(0.1, 0.9, (B, Q, 2)), rng.uniform(0.05, 0.5, (B, Q, 2))], -1
    ).astype(np.float32)
    sizes = np.array([[480, 640], [600, 400], [333, 500]], np.int32)  # (h, w)
    return {"logits": logits, "boxes": boxes}, sizes


def _numpy_postprocess(outputs, sizes):
    lg = np.asarray(outputs["logits"], np.float64)
    prob = np.exp(lg - lg.max(-1, keepdims=True))
    prob = (prob / prob.sum(-1, keepdims=True))[..., :-1]
    cx, cy, w, h = np.moveaxis(np.asarray(outputs["boxes"], np.float64), -1, 0)
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    scale = np.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], -1)[:, None]
    return prob.max(-1), prob.argmax(-1), xyxy * scale


def test_postprocess_matches_numpy_and_jit():
    outputs, sizes = _outputs(0)
    got = jax.jit(models.detr_postprocess)(outputs, sizes)
    scores, labels, boxes = _numpy_postprocess(outputs, sizes)
    np.testing.assert_allclose(np.asarray(got["scores"]), scores, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(got["labels"]), labels)
    np.testing.assert_allclose(np.asarray(got["boxes"]), boxes, rtol=1e-5, atol=1e-3)
    assert got["labels"].max() < C

    normalised = models.detr_postprocess(outputs, None)
    np.testing.assert_allclose(
        np.asarray(normalised["boxes"]),
        boxes / np.stack([sizes[:, 1], sizes[:, 0]] * 2, -1)[:, None],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.torch
def test_postprocess_and_threshold_match_hf_transformers():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil
    from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput

    outputs, sizes = _outputs(1)
    hf_out = DetrObjectDetectionOutput(
        logits=torch.tensor(outputs["logits"]), pred_boxes=torch.tensor(outputs["boxes"])
    )
    threshold = 0.4
    want = DetrImageProcessorPil().post_process_object_detection(
        hf_out, threshold=threshold, target_sizes=torch.tensor(sizes)
    )
    got = jax.jit(
        lambda o, s: models.detr_score_threshold(models.detr_postprocess(o, s), threshold)
    )(outputs, sizes)
    for i, w in enumerate(want):
        keep = np.asarray(got["valid"][i])
        assert keep.sum() == len(w["scores"])
        np.testing.assert_allclose(np.asarray(got["scores"][i])[keep], w["scores"], rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(got["labels"][i])[keep], w["labels"])
        np.testing.assert_allclose(
            np.asarray(got["boxes"][i])[keep], w["boxes"], rtol=1e-5, atol=1e-3
        )
        assert (np.asarray(got["scores"][i])[~keep] == 0).all()


def test_top_k_keeps_the_best_in_order():
    outputs, sizes = _outputs(2)
    k = 4
    got = jax.jit(functools.partial(models.detr_postprocess, top_k=k))(outputs, sizes)
    scores, labels, boxes = _numpy_postprocess(outputs, sizes)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    take = lambda x: np.take_along_axis(x, order.reshape(*order.shape, *[1] * (x.ndim - 2)), 1)  # noqa: E731
    np.testing.assert_allclose(np.asarray(got["scores"]), take(scores), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(got["labels"]), take(labels))
    np.testing.assert_allclose(np.asarray(got["boxes"]), take(boxes), rtol=1e-5, atol=1e-3)

    # Threshold then top-k carries the mask along; ties keep the lower query first.
    flat = {
        "scores": np.array([[0.5, 0.9, 0.5, 0.1]], np.float32),
        "labels": np.array([[0, 1, 2, 3]], np.int32),
        "boxes": np.zeros((1, 4, 4), np.float32),
    }
    top = models.detr_top_k(models.detr_score_threshold(flat, 0.2), 3)
    np.testing.assert_array_equal(np.asarray(top["scores"]), flat["scores"][:, [1, 0, 2]])
    np.testing.assert_array_equal(np.asarray(top["labels"]), [[1, 0, 2]])
    np.testing.assert_array_equal(np.asarray(top["valid"]), [[True, True, True]])


def test_postprocess_bad_input():
    outputs, sizes = _outputs(3)
    with pytest.raises(ValueError, match="image_sizes"):
        models.detr_postprocess(outputs, sizes[:2])
    with pytest.raises(ValueError, match=r"outputs\['boxes'\]"):
        models.detr_postprocess(dict(outputs, boxes=outputs["boxes"][..., :2]), sizes)
    with pytest.raises(ValueError, match="k must be"):
        models.detr_postprocess(outputs, sizes, top_k=Q + 1)
    with pytest.raises(TypeError, match="outputs"):
        models.detr_postprocess(outputs["logits"], sizes)


def test_nan_scores_rank_last_and_nan_logits_never_count_as_a_class():
    # Before: lax.top_k ranked NaN first (NMS ranks it last) and a NaN logit's query took
    # the label of the NaN. One rule: a query with a NaN logit scores NaN with label -1,
    # and NaN scores rank below every number, -inf included, ties by lower index.
    outputs, sizes = _outputs(2)
    logits = outputs["logits"].copy()
    logits[0, 3, 1] = np.nan
    logits[0, 5, :] = np.nan
    got = models.detr_postprocess({"logits": logits, "boxes": outputs["boxes"]}, sizes)
    scores, labels = np.asarray(got["scores"]), np.asarray(got["labels"])
    assert np.isnan(scores[0, [3, 5]]).all() and (labels[0, [3, 5]] == -1).all()
    finite = np.isfinite(scores[0])
    assert (labels[0, finite] >= 0).all()
    # At DETR's own size: XLA's CPU max reduction skips NaN at [2, 100, 92] (it gave score
    # -inf and label 0 for a query holding one NaN logit).
    rng = np.random.default_rng(4)
    big = rng.normal(size=(2, 100, 92)).astype(np.float32)
    big[0, 7, 40] = big[1, 99, 3] = np.nan
    big_boxes = rng.uniform(0.2, 0.8, (2, 100, 4)).astype(np.float32)
    got = models.detr_postprocess({"logits": big, "boxes": big_boxes}, None)
    scores, labels = np.asarray(got["scores"]), np.asarray(got["labels"])
    nan_query = np.zeros((2, 100), bool)
    nan_query[0, 7] = nan_query[1, 99] = True
    assert np.isnan(scores[nan_query]).all() and (labels[nan_query] == -1).all()
    assert np.isfinite(scores[~nan_query]).all() and (labels[~nan_query] >= 0).all()
    s = np.array([[0.5, np.nan, -np.inf, 0.7, np.nan, 0.1]], np.float32)
    dets = {"scores": s, "labels": np.zeros((1, 6), np.int32), "boxes": np.zeros((1, 6, 4))}
    top = models.detr_top_k(dets, 6)
    np.testing.assert_array_equal(np.asarray(top["scores"])[0, :4], s[0, [3, 0, 5, 2]])
    assert np.isnan(np.asarray(top["scores"])[0, 4:]).all()
    order = np.asarray(models.detr_top_k({**dets, "index": np.arange(6)[None]}, 6)["index"])
    np.testing.assert_array_equal(order, [[3, 0, 5, 2, 1, 4]])
    assert not np.asarray(models.detr_score_threshold(dets, -1.0)["valid"])[0, [1, 4]].any()
