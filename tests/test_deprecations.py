"""Every deprecated public name warns, names its replacement and keeps its old meaning."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from jaxvision import api, boxes, metrics, models, nn, parallel

DEPRECATED = [e for e in api.load_registry().endpoints() if e.deprecated]


def _old(name):
    namespace, symbol = name.split(".")
    module = importlib.import_module(f"jaxvision.{namespace}")
    with pytest.warns(DeprecationWarning, match=f"use jaxvision.{namespace}") as caught:
        obj = getattr(module, symbol)
    assert len(caught) >= 1
    return obj


@pytest.mark.parametrize("endpoint", DEPRECATED, ids=lambda e: e.name)
def test_old_name_warns_with_its_replacement_and_resolves(endpoint):
    module = importlib.import_module(f"jaxvision.{endpoint.namespace}")
    with pytest.warns(DeprecationWarning, match=f"use jaxvision.{endpoint.replacement}$"):
        obj = getattr(module, endpoint.symbol)
    assert obj is endpoint.obj
    assert endpoint.symbol not in module.__all__


T = jnp.array([0, 0, 1, 1, 2])
P = jnp.array([0, 2, 1, 1, 1])
CM = metrics.confusion_from_labels(P, T, 3)
A = jnp.array([[0.0, 0, 4, 4], [1, 1, 3, 5]])
B = jnp.array([[1.0, 1, 3, 3], [0, 0, 2, 2], [2, 2, 6, 6]])

# old name -> (call with the old name, the same call with the new name)
CALLS = {
    "boxes.generalized_box_iou": (lambda f: f(A, B), lambda: boxes.box_giou(A, B)),
    "boxes.distance_box_iou": (lambda f: f(A, B), lambda: boxes.box_diou(A, B)),
    "boxes.complete_box_iou": (lambda f: f(A, B), lambda: boxes.box_ciou(A, B)),
    "metrics.confusion_matrix": (
        lambda f: f(T, P, 3),  # the old (target, pred) order keeps its meaning
        lambda: metrics.confusion_from_labels(P, T, 3),
    ),
    "metrics.confusion_matrix_from_logits": (
        lambda f: f(T, jax.nn.one_hot(P, 3)),
        lambda: metrics.confusion_from_logits(jax.nn.one_hot(P, 3), T),
    ),
    "metrics.dice": (lambda f: f(CM), lambda: metrics.class_dice(CM)),
    "metrics.precision": (lambda f: f(CM), lambda: metrics.class_precision(CM)),
    "metrics.recall": (lambda f: f(CM), lambda: metrics.class_accuracy(CM)),
    "metrics.mean_pixel_accuracy": (lambda f: f(CM), lambda: metrics.mean_accuracy(CM)),
    "metrics.fbeta_score": (lambda f: f(CM, 2.0), lambda: metrics.class_fbeta(CM, beta=2.0)),
    "models.detr_matching_cost": (
        lambda f: f(jnp.zeros((2, 3)), A / 8, T[:2], B[:2] / 8),
        lambda: models.detr_matching_costs(jnp.zeros((2, 3)), A / 8, T[:2], B[:2] / 8),
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calling_an_old_name_warns_and_gives_the_new_result(name):
    old_call, new_call = CALLS[name]
    np.testing.assert_array_equal(np.asarray(old_call(_old(name))), np.asarray(new_call()))


def test_every_deprecated_function_is_called_above_or_is_a_class_or_collective():
    others = {
        "data.coco_evaluate",  # moved unchanged: the alias test above covers it
        "nn.MultiHeadAttention",
        "parallel.replicate",
        "parallel.tree_all_reduce",
    }
    assert {e.name for e in DEPRECATED} == set(CALLS) | others


def test_old_module_and_collective_names_still_work():
    assert _old("nn.MultiHeadAttention") is nn.MaskedMultiHeadAttention
    mesh = parallel.make_mesh(1)
    tree = {"w": jnp.ones(3)}
    np.testing.assert_array_equal(_old("parallel.replicate")(tree, mesh)["w"], tree["w"])
    reduce = _old("parallel.tree_all_reduce")
    mesh2 = parallel.make_mesh(2)
    x = parallel.shard_batch(jnp.arange(4.0), mesh2)
    spec = PartitionSpec("data")
    f = jax.shard_map(lambda x: reduce(x, "data"), mesh=mesh2, in_specs=spec, out_specs=spec)
    np.testing.assert_allclose(f(x), [2.0, 4.0, 2.0, 4.0], rtol=1e-6)


def test_confusion_state_update_keeps_its_old_order_with_a_warning():
    state = metrics.ConfusionState.init(3)
    with pytest.warns(DeprecationWarning, match=r"add_labels\(pred, target\)"):
        old = state.update(T, P)
    np.testing.assert_array_equal(old.counts(), state.add_labels(P, T).counts())


def test_old_score_names_warn_and_keep_their_keys():
    with pytest.warns(DeprecationWarning, match="'dice' is deprecated; use 'class_dice'"):
        got = metrics.segmentation_scores(CM, ["dice", "mean_pixel_accuracy", "mean_iou"])
    assert set(got) == {"dice", "mean_pixel_accuracy", "mean_iou"}
    np.testing.assert_array_equal(got["dice"], metrics.class_dice(CM))
