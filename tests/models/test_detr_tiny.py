"""The tiny DETR preset: output contract, jit forward, gradients, frozen parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision import models

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def tiny():
    # An "rbg" key: its initialisers compile several times faster than threefry's on CPU.
    return models.detr_tiny(NUM_CLASSES, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))


@pytest.fixture(scope="module")
def batch():
    images = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    mask = np.ones((2, 64, 64), bool)
    mask[1, 40:, :] = False
    mask[1, :, 48:] = False
    return images, jnp.asarray(mask)


def test_forward_under_jit_follows_the_output_contract(tiny, batch):
    images, mask = batch
    out = nnx.jit(lambda m, x, pm: m(x, pm))(tiny, images, mask)
    q, c = tiny.config.num_queries, NUM_CLASSES + 1
    assert out["logits"].shape == (2, q, c) and out["logits"].dtype == jnp.float32
    assert out["boxes"].shape == (2, q, 4) and out["boxes"].dtype == jnp.float32
    assert len(out["aux"]) == tiny.config.num_decoder_layers - 1
    for aux in out["aux"]:
        assert aux["logits"].shape == (2, q, c) and aux["boxes"].shape == (2, q, 4)
    boxes = np.asarray(out["boxes"])
    assert np.isfinite(np.asarray(out["logits"])).all()
    assert ((boxes >= 0) & (boxes <= 1)).all()


def test_gradients_under_jit_are_finite_and_reach_every_parameter(tiny, batch):
    images, mask = batch

    def loss_fn(model):
        out = model(images, mask)
        terms = [out] + list(out["aux"])
        return sum(jnp.sum(o["logits"] ** 2) + jnp.sum(o["boxes"]) for o in terms)

    tiny.train()
    try:
        grads = nnx.jit(nnx.grad(loss_fn))(tiny)
    finally:
        tiny.eval()
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    params = nnx.state(tiny, nnx.Param)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert np.abs(np.asarray(grads["class_head"]["kernel"][...])).max() > 0
    assert np.abs(np.asarray(grads["backbone"]["stem_conv"]["kernel"][...])).max() > 0


def test_train_and_eval_are_module_state(batch):
    images, mask = batch
    model = models.detr_tiny(NUM_CLASSES, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")), dropout=0.5)
    assert model.deterministic and all(m.deterministic for m in _dropouts(model))
    first = model(images, mask)["logits"]
    np.testing.assert_array_equal(np.asarray(model(images, mask)["logits"]), np.asarray(first))
    model.train()
    assert all(not m.deterministic for m in _dropouts(model))
    trained = model(images, mask)["logits"]
    assert not np.allclose(np.asarray(trained), np.asarray(first))
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(images, mask)["logits"]), np.asarray(first))
    with pytest.warns(DeprecationWarning, match="model.train"):
        model(images, mask, train=True)
    assert model.deterministic  # the old keyword applies to its call only


def _dropouts(model):
    return [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Dropout)]


@pytest.mark.parametrize(
    "images_shape, mask_shape, error, message",
    [
        ((2, 64, 64, 3), (3, 64, 64), ValueError, "batch sizes differ"),
        ((2, 64, 64, 1), (2, 64, 64), ValueError, "channels last"),
        ((2, 3, 64, 64), (2, 3, 64), ValueError, "channels last"),
        ((64, 64, 3), (64, 64), ValueError, "channels last"),
        ((2, 64, 64, 3), (2, 64, 48), ValueError, "pixel_mask shape"),
        ((2, 64, 64, 3), (2, 64), ValueError, r"pixel_mask must be \[B, H, W\]"),
    ],
)
def test_bad_input_is_refused_at_trace_time(tiny, images_shape, mask_shape, error, message):
    images = jax.ShapeDtypeStruct(images_shape, jnp.float32)
    mask = jax.ShapeDtypeStruct(mask_shape, jnp.bool_)
    graphdef, state = nnx.split(tiny)
    forward = jax.jit(lambda s, x, m: nnx.merge(graphdef, s)(x, m))
    # .trace() runs the checks without compiling anything.
    with pytest.raises(error, match=message):
        forward.trace(state, images, mask)


def test_integer_images_are_refused(tiny):
    with pytest.raises(TypeError, match="floating"):
        tiny.check_inputs(jnp.zeros((1, 64, 64, 3), jnp.uint8), jnp.ones((1, 64, 64), bool))


def test_optimizer_leaves_frozen_parameters_unchanged_and_uses_the_backbone_rate(tiny, batch):
    import dataclasses

    import optax

    config = dataclasses.replace(
        tiny.config, backbone=dataclasses.replace(tiny.config.backbone, frozen_stages=2)
    )
    params = nnx.state(tiny, nnx.Param)
    grads = jax.tree.map(jnp.ones_like, params)
    tx = models.detr_optimizer(config, max_grad_norm=None, weight_decay=0.0)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    stem = np.asarray(updates["backbone"]["stem_conv"]["kernel"][...])
    late = np.asarray(updates["backbone"]["stages"][1][0]["convs"][0]["kernel"][...])
    head = np.asarray(updates["class_head"]["kernel"][...])
    assert (stem == 0).all()
    # First Adam step moves every parameter by its learning rate.
    np.testing.assert_allclose(late, -1e-5, rtol=1e-3)
    np.testing.assert_allclose(head, -1e-4, rtol=1e-3)
    assert isinstance(tx, optax.GradientTransformation)
