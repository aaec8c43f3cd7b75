"""RealNVP flow: log-det against a float64 numerical Jacobian, finiteness, module twin."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvision._src.nn.realnvp import RealNVP
from jaxvision._src.ops.realnvp import realnvp_init, realnvp_inverse, realnvp_log_prob


def _np_inverse(params, x):
    """float64 NumPy transcription of the couplings (last to first)."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

    def mlp(m, i, v):
        h = v @ m.w1[i] + m.b1[i]
        h = np.where(h > 0, h, 0.01 * h)
        h = h @ m.w2[i] + m.b2[i]
        h = np.where(h > 0, h, 0.01 * h)
        return h @ m.w3[i] + m.b3[i]

    z = np.asarray(x, np.float64)
    n = p.scale.w1.shape[0]
    for i in reversed(range(n)):
        m = np.array([0.0, 1.0]) if i % 2 == 0 else np.array([1.0, 0.0])
        kept = m * z
        s = np.tanh(mlp(p.scale, i, kept)) * (1 - m)
        t = mlp(p.shift, i, kept) * (1 - m)
        z = kept + (1 - m) * (z - t) * np.exp(-s)
    return z


def test_log_det_matches_float64_numerical_jacobian():
    params = realnvp_init(jax.random.key(0), gain=1.0)
    xs = np.random.default_rng(0).normal(size=(6, 2)) * 2
    z, log_det = realnvp_inverse(params, xs.astype(np.float32))
    np.testing.assert_allclose(z, _np_inverse(params, xs), rtol=1e-4, atol=1e-5)
    h = 1e-6
    for x, ld in zip(xs, np.asarray(log_det), strict=True):
        jac = np.stack(
            [
                (_np_inverse(params, x + h * e) - _np_inverse(params, x - h * e)) / (2 * h)
                for e in np.eye(2)
            ],
            axis=-1,
        )
        np.testing.assert_allclose(ld, np.log(abs(np.linalg.det(jac))), rtol=1e-4, atol=1e-5)


def test_log_prob_integrates_to_one_on_a_grid():
    params = realnvp_init(jax.random.key(1), gain=0.3)
    t = np.linspace(-9, 9, 301)
    grid = np.stack(np.meshgrid(t, t), -1).reshape(-1, 2).astype(np.float32)
    mass = np.exp(np.asarray(realnvp_log_prob(params, grid), np.float64)).sum() * (t[1] - t[0]) ** 2
    np.testing.assert_allclose(mass, 1.0, rtol=2e-2)


def test_finite_values_and_grads_at_magnitude_1e4():
    params = realnvp_init(jax.random.key(2), gain=1.0)
    x = jnp.array([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4], [0.0, 0.0]])

    def f(params, x):
        return jnp.sum(realnvp_log_prob(params, x))

    assert np.isfinite(float(f(params, x)))
    grads = jax.grad(f, argnums=(0, 1))(params, x)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_module_equals_functional_twin():
    flow = RealNVP(rngs=nnx.Rngs(3), gain=1.0)
    x = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(flow(x), realnvp_log_prob(flow.params, x), rtol=1e-6)
    np.testing.assert_allclose(
        flow(x), realnvp_log_prob(realnvp_init(nnx.Rngs(3).params(), gain=1.0), x), rtol=1e-6
    )
    assert len(jax.tree.leaves(nnx.state(flow, nnx.Param))) == 12
