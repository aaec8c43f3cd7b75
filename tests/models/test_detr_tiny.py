"""The tiny DETR preset: output contract, jit forward, gradients, frozen parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision import models, nn

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def tiny():
    return models.detr_tiny(NUM_CLASSES, rngs=nnx.Rngs(0))


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
        out = model(images, mask, train=True)
        terms = [out] + list(out["aux"])
        return sum(jnp.sum(o["logits"] ** 2) + jnp.sum(o["boxes"]) for o in terms)

    grads = nnx.jit(nnx.grad(loss_fn))(tiny)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    params = nnx.state(tiny, nnx.Param)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert np.abs(np.asarray(grads["class_head"]["kernel"][...])).max() > 0
    assert np.abs(np.asarray(grads["backbone"]["stem_conv"]["kernel"][...])).max() > 0


def test_frozen_batch_norm_statistics_are_not_parameters():
    model = nnx.eval_shape(lambda: models.detr_r50(91, rngs=nnx.Rngs(0)))
    stats = nnx.state(model, nn.FrozenStat)
    assert len(jax.tree.leaves(stats)) > 0
    assert "stem_norm" not in nnx.state(model, nnx.Param)["backbone"]
