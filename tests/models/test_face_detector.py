"""FaceDetector: output layout matches the anchors, train/eval state, a training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxvision import models

CONFIG = models.FaceDetectorConfig(
    widths=(8, 8, 16, 16, 16),
    depths=(1, 1, 1, 1, 1),
    fpn_width=16,
    anchor_sizes=((16, 24), (32, 48), (64, 96)),
)


@pytest.fixture(scope="module")
def model():
    return models.FaceDetector(CONFIG, rngs=nnx.Rngs(0))


def test_outputs_follow_anchor_order(model):
    model.eval()
    images = jnp.zeros((2, 64, 96, 3))
    out = nnx.jit(lambda m, x: m(x))(model, images)
    a = model.anchors((64, 96)).shape[0]
    assert a == 2 * (8 * 12 + 4 * 6 + 2 * 3)
    assert out.logits.shape == (2, a) and out.box_deltas.shape == (2, a, 4)
    assert out.landmark_deltas.shape == (2, a, 5, 2)
    # Zero images: every anchor starts at the focal prior.
    np.testing.assert_allclose(jax.nn.sigmoid(out.logits), 0.01, rtol=1e-3)


def test_image_size_not_divisible_by_largest_stride(model):
    with pytest.raises(ValueError, match="divisible by the largest stride 32"):
        model(jnp.zeros((1, 48, 64, 3)))
    with pytest.raises(ValueError, match=r"strides .* must be the last strides"):
        models.FaceDetectorConfig(strides=(4, 16), anchor_sizes=((16,), (32,)))


def test_train_step_lowers_loss_and_eval_uses_running_stats(model):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
    boxes = np.array([[[10, 12, 40, 44]], [[30, 20, 54, 46]]], np.float32)
    targets = models.FaceTargets(
        boxes,
        np.tile(boxes[..., None, :2] + 8, (1, 1, 5, 1)),
        np.ones((2, 1), bool),
        np.ones((2, 1), bool),
    )
    anchors = model.anchors(64)
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    opt = optax.adam(1e-2)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, stats, opt_state):
        def loss_fn(params):
            m = nnx.merge(graphdef, params, stats, copy=True)
            m.train()
            loss = models.face_detector_loss(m(images), targets, anchors).total
            return loss, nnx.state(m, nnx.BatchStat)

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    losses = []
    for _ in range(15):
        params, stats, opt_state, loss = step(params, stats, opt_state)
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    trained = nnx.merge(graphdef, params, stats)
    trained.eval()
    a = nnx.jit(lambda m, x: m(x))(trained, images[:1]).logits
    b = nnx.jit(lambda m, x: m(x))(trained, images).logits[:1]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # eval: per-image, batch-free
