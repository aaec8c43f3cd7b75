"""Group DETR: query groups that do not see each other, each matched on its own."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision import models

C, Q, G = 3, 4, 3
SMALL = {
    "d_model": 16,
    "num_heads": 2,
    "ffn_dim": 32,
    "num_encoder_layers": 1,
    "num_decoder_layers": 2,
    "backbone": {"widths": (8, 8, 16), "stem_width": 8},
}


@pytest.fixture(scope="module")
def grouped():
    key = jax.random.key(0, impl="rbg")
    return models.detr_tiny(C, num_queries=Q, num_query_groups=G, rngs=nnx.Rngs(key), **SMALL)


_apply = nnx.jit(lambda m, x, pm: m(x, pm))


def _forward(model, train):
    images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    model.train() if train else model.eval()
    out = _apply(model, images, jnp.ones((2, 32, 32), bool))
    model.eval()
    return out


@pytest.fixture(scope="module")
def train_out(grouped):
    return _forward(grouped, train=True)


def test_groups_are_independent_and_eval_runs_group_zero(grouped, train_out):
    train = train_out
    assert train["logits"].shape == (2, G * Q, C + 1)
    assert train["aux"][0]["boxes"].shape == (2, G * Q, 4)
    evaluated = _forward(grouped, train=False)
    assert evaluated["logits"].shape == (2, Q, C + 1)
    # detr_tiny has no dropout, so train and eval differ only in the groups.
    np.testing.assert_allclose(evaluated["logits"], train["logits"][:, :Q], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(evaluated["boxes"], train["boxes"][:, :Q], rtol=1e-5, atol=1e-6)

    # Changing group 1's queries changes group 1 only: no attention across groups.
    saved = grouped.query_embed[...]
    grouped.query_embed[...] = saved.at[Q : 2 * Q].add(1.0)
    try:
        moved = _forward(grouped, train=True)
    finally:
        grouped.query_embed[...] = saved
    for key in ("logits", "boxes"):
        np.testing.assert_array_equal(moved[key][:, :Q], train[key][:, :Q])
        np.testing.assert_array_equal(moved[key][:, 2 * Q :], train[key][:, 2 * Q :])
        assert not np.allclose(moved[key][:, Q : 2 * Q], train[key][:, Q : 2 * Q])


def test_grouped_loss_is_the_mean_of_the_groups_losses(train_out):
    out = train_out
    targets = {
        "labels": jnp.array([[0, 2], [1, 0]]),
        "boxes": jnp.array([[[0.5, 0.5, 0.2, 0.3], [0.2, 0.3, 0.1, 0.1]]] * 2),
        "mask": jnp.array([[True, True], [True, False]]),
    }
    grouped_loss = jax.jit(functools.partial(models.detr_loss, num_classes=C, query_groups=G))
    plain_loss = jax.jit(functools.partial(models.detr_loss, num_classes=C))
    loss, metrics = grouped_loss(out, targets)

    def group(g):
        cut = lambda d: {k: d[k][:, g * Q : (g + 1) * Q] for k in ("logits", "boxes")}  # noqa: E731
        return {**cut(out), "aux": tuple(cut(a) for a in out["aux"])}

    per_group = [plain_loss(group(g), targets) for g in range(G)]
    np.testing.assert_allclose(loss, np.mean([lg for lg, _ in per_group]), rtol=1e-6)
    for name in ("loss_ce", "loss_bbox", "loss_giou_0"):
        np.testing.assert_allclose(
            metrics[name], np.mean([m[name] for _, m in per_group]), rtol=1e-6
        )


def test_bad_groups_are_named(train_out):
    out = train_out
    targets = {
        "labels": jnp.zeros((2, 1), int),
        "boxes": jnp.full((2, 1, 4), 0.5),
        "mask": jnp.ones((2, 1), bool),
    }
    with pytest.raises(ValueError, match="query_groups=5"):
        models.detr_loss(out, targets, num_classes=C, query_groups=5)
    with pytest.raises(ValueError, match="query_groups must be a positive int"):
        models.detr_loss(out, targets, num_classes=C, query_groups=0)
    with pytest.raises(ValueError, match="num_query_groups"):
        models.DETRConfig(num_query_groups=0)
