"""``detach()`` sharing storage, against ``lax.stop_gradient``.

    python experiments/contrast/detach.py

PyTorch: ``d = y.detach()`` is a new tensor that SHARES y's storage; editing ``d`` in place
changes ``y`` too (and, if autograd saved ``y``, the backward pass then fails or is wrong).
JAX: ``lax.stop_gradient(y)`` is an identity in value whose derivative is zero; there is
no storage to share, so nothing written through it can reach ``y``.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax import lax


def torch_side(x):
    xt = torch.tensor(x, requires_grad=True)
    y = xt * 2.0
    d = y.detach()
    shares = d.data_ptr() == y.data_ptr()
    d.zero_()  # in place on the detached view
    y_after = y.detach().numpy().copy()
    # stop-gradient use: loss = y * detach(y), d/dx = 2 * detach(y)
    xt2 = torch.tensor(x, requires_grad=True)
    y2 = xt2 * 2.0
    (y2 * y2.detach()).sum().backward()
    return shares, y_after, xt2.grad.numpy()


def jax_side(x):
    def f(x):
        y = x * 2.0
        return jnp.sum(y * lax.stop_gradient(y))

    y = jnp.asarray(x) * 2.0
    d = lax.stop_gradient(y)
    d = d.at[:].set(0.0)  # a new array
    return np.asarray(y), np.asarray(jax.grad(f)(jnp.asarray(x)))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args(argv)
    x = np.arange(1, args.n + 1, dtype=np.float32)
    shares, y_after, torch_grad = torch_side(x)
    y_jax, jax_grad = jax_side(x)
    print("PyTorch: y = 2 x; d = y.detach(); d.zero_()")
    print(f"  d shares y's storage: {shares}; y afterwards: {y_after}")
    print(f"  grad of sum(y * y.detach()): {torch_grad}")
    print("JAX:     y = 2 x; d = lax.stop_gradient(y); d = d.at[:].set(0)")
    print(f"  y afterwards: {y_jax}")
    print(f"  grad of sum(y * stop_gradient(y)): {jax_grad}")
    print("Differs: the same gradient (2 * 2x = 4x, the stopped factor held constant), but")
    print("  detach() is an alias of the data, so an in-place edit leaks back into y;")
    print("  stop_gradient only changes the derivative.")
    assert shares and not y_after.any()
    np.testing.assert_allclose(y_jax, 2 * x)
    np.testing.assert_allclose(torch_grad, 4 * x, rtol=1e-6)
    np.testing.assert_allclose(jax_grad, 4 * x, rtol=1e-6)
    return {"shares_storage": shares, "torch_y_after": y_after.tolist(), "jax_y": y_jax.tolist()}


if __name__ == "__main__":
    main()
