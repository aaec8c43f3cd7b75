"""RLE loss: ANCHORS section 9 values, a NumPy transcription with a flow, finiteness."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.losses.rle_loss import rle_loss
from jaxvision._src.ops.realnvp import realnvp_init, realnvp_log_prob

ZERO = np.zeros((1, 2))


@pytest.mark.parametrize(
    ("error", "q", "want"),
    [
        ((0.0, 0.0), "laplace", 2.289460),
        ((0.0, 0.0), "gaussian", 2.741042),
        ((0.1, -0.2), "laplace", 3.089460),
        ((0.1, -0.2), "gaussian", 3.041042),
    ],
)
def test_anchor_values_with_the_identity_flow(error, q, want):
    got = rle_loss(np.array([error]), ZERO, ZERO, q=q)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The identity flow (gain 0) is the standard normal prior.
    flow = functools.partial(realnvp_log_prob, realnvp_init(jax.random.key(0), gain=0.0))
    np.testing.assert_allclose(
        rle_loss(np.array([error]), ZERO, ZERO, q=q, log_prob=flow), want, rtol=1e-6
    )


def test_official_code_form_differs_by_its_q_term():
    # res-loglikelihood-regression's logQ: log(sigma / amp) + |err| / (sqrt(2) sigma).
    sigma, err = 0.5, np.array([0.1, -0.2])
    log_phi = -math.log(2 * math.pi) - 0.5 * np.sum((err / sigma) ** 2)
    official = np.sum(
        np.log(sigma)
        - log_phi
        + np.log(sigma * math.sqrt(2 * math.pi))
        + np.abs(err) / (math.sqrt(2) * sigma)
    )
    np.testing.assert_allclose(official, 3.365307, rtol=1e-6)
    ours = float(rle_loss(err[None], ZERO, ZERO, q="laplace"))
    assert abs(ours - official) > 0.2


def test_matches_numpy_with_a_random_flow_and_weights():
    rng = np.random.default_rng(0)
    params = realnvp_init(jax.random.key(1), gain=1.0)
    pred, raw, gt = rng.normal(size=(3, 4, 5, 2)).astype(np.float32)
    w = rng.uniform(size=(4, 5)).astype(np.float32)
    sigma = 1 / (1 + np.exp(-raw.astype(np.float64))) + 1e-9
    bar = (pred - gt) / sigma
    log_g = np.asarray(realnvp_log_prob(params, bar.astype(np.float32)), np.float64)
    per = np.log(sigma) - log_g[..., None] + np.log(2 * sigma) + np.abs(bar)
    want = (per.sum(-1) * w).mean()
    got = rle_loss(pred, raw, gt, w, log_prob=functools.partial(realnvp_log_prob, params))
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("q", ["laplace", "gaussian"])
def test_finite_values_and_grads_at_extreme_sigma_and_error(q):
    params = realnvp_init(jax.random.key(2), gain=1.0)
    # sigma from ~1e-35 (floored at 1e-9) to 1, errors from 0 to 1e3: every pair at once.
    raw, err = np.meshgrid([-80.0, -20.0, 0.0, 20.0, 80.0], [0.0, 1e-3, 10.0, 1e3])
    raws = jnp.asarray(np.repeat(raw.reshape(-1, 1), 2, axis=1))
    pred = jnp.asarray(np.repeat(err.reshape(-1, 1), 2, axis=1))

    @jax.jit
    def loss(pred, raw, params):
        lp = functools.partial(realnvp_log_prob, params)
        return rle_loss(pred, raw, jnp.zeros_like(pred), q=q, log_prob=lp)

    assert np.isfinite(float(loss(pred, raws, params)))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(pred, raws, params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="sigma_logits"):
        rle_loss(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="`q`"):
        rle_loss(ZERO, ZERO, ZERO, q="cauchy")
