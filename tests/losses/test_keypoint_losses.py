"""Heatmap MSE (+ OHKM), SimCC KL and integral L1 against NumPy transcriptions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.keypoints.simcc import simcc_encode
from jaxvision._src.losses.keypoint_losses import (
    heatmap_mse_loss,
    integral_l1_loss,
    simcc_kl_loss,
)


def test_heatmap_mse_and_ohkm_match_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(2, 2, 5, 4, 6)).astype(np.float32)
    w = rng.uniform(size=(2, 6)).astype(np.float32)
    per_kp = ((p - t) ** 2).mean(axis=(1, 2)) * w
    np.testing.assert_allclose(heatmap_mse_loss(p, t, w), per_kp.mean(), rtol=1e-5)
    top = np.sort(per_kp, axis=-1)[:, -3:]
    np.testing.assert_allclose(heatmap_mse_loss(p, t, w, ohkm_topk=3), top.mean(), rtol=1e-5)


def test_simcc_kl_anchor_one_hot_against_uniform():
    onehot = np.eye(384)[None, 7]
    uniform = np.full((1, 384), 1 / 384)
    got = simcc_kl_loss(np.zeros((1, 384)), np.zeros((1, 384)), onehot, uniform, beta=1.0)
    np.testing.assert_allclose(got, np.log(384), rtol=1e-6)
    np.testing.assert_allclose(np.log(384), 5.950643, rtol=1e-7)


def test_simcc_kl_matches_numpy_with_smoothing_and_weights():
    rng = np.random.default_rng(1)
    px, py = rng.normal(size=(2, 3, 4, 40)).astype(np.float32)
    tx, ty = simcc_encode(rng.uniform(2, 18, (3, 4, 2)), None, (20, 20), split_ratio=2.0)
    w = rng.uniform(size=(3, 4)).astype(np.float32)

    def kl(p, t, e):
        t = (1 - e) * np.asarray(t, np.float64) + e / t.shape[-1]
        z = 10.0 * p.astype(np.float64)
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        return (np.where(t > 0, t * np.log(np.maximum(t, 1e-300)), 0) - t * logp).sum(-1)

    want = ((kl(px, tx, 0.1) + kl(py, ty, 0.1)) * w).mean()
    got = simcc_kl_loss(px, py, tx, ty, w, beta=10.0, label_smoothing=0.1)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    g = jax.grad(lambda a: simcc_kl_loss(a, py, tx, ty, w))(jnp.asarray(px))
    assert np.isfinite(np.asarray(g)).all()


def test_integral_l1_matches_numpy_and_has_finite_grads():
    rng = np.random.default_rng(2)
    p, t = rng.normal(size=(2, 5, 17, 2)).astype(np.float32)
    w = (rng.uniform(size=(5, 17)) > 0.3).astype(np.float32)
    np.testing.assert_allclose(
        integral_l1_loss(p, t, w), (np.abs(p - t) * w[..., None]).mean(), rtol=1e-6
    )
    g = jax.grad(integral_l1_loss)(jnp.asarray(p), t, w)
    assert np.isfinite(np.asarray(g)).all()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="target_weight"):
        heatmap_mse_loss(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.ones(2))
    with pytest.raises(ValueError, match="ohkm_topk"):
        heatmap_mse_loss(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), ohkm_topk=4)
    with pytest.raises(ValueError, match="pred_x"):
        simcc_kl_loss(np.zeros((2, 8)), np.zeros((2, 8)), np.zeros((2, 9)), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="pred"):
        integral_l1_loss(np.zeros((2, 2)), np.zeros((3, 2)))
