"""``.grad`` accumulating across ``backward()`` calls, against JAX's fresh gradient pytree.

    python experiments/contrast/grad_accumulation.py

PyTorch: each ``backward()`` ADDS into ``param.grad``; forgetting ``optimizer.zero_grad()``
silently doubles (triples, ...) the gradient. It is also how gradient accumulation over
micro-batches is written. JAX: ``jax.grad`` returns a new pytree each call, nothing is
stored on the parameters; accumulation is an explicit ``jax.tree.map(jnp.add, ...)`` (or
``optax.MultiSteps``).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch


def torch_side(w0, x, calls):
    w = torch.tensor(w0, requires_grad=True)
    seen = []
    for _ in range(calls):
        loss = (w * torch.tensor(x)).sum() ** 2
        loss.backward()  # no zero_grad between calls
        seen.append(w.grad.clone().numpy())
    return seen


def jax_side(w0, x, calls):
    grad = jax.jit(jax.grad(lambda w: jnp.sum(w * x) ** 2))
    fresh = [np.asarray(grad(jnp.asarray(w0))) for _ in range(calls)]
    total = jax.tree.map(jnp.zeros_like, jnp.asarray(w0))
    for _ in range(calls):
        total = jax.tree.map(jnp.add, total, grad(jnp.asarray(w0)))
    return fresh, np.asarray(total)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    w0 = np.array([0.5, -1.0, 2.0], np.float32)
    x = np.array([1.0, 2.0, 3.0], np.float32)
    seen = torch_side(w0, x, args.calls)
    fresh, total = jax_side(w0, x, args.calls)
    print(f"PyTorch: {args.calls} x loss.backward() without zero_grad; w.grad after each:")
    for i, g in enumerate(seen, 1):
        print(f"  call {i}: {g}")
    print(f"JAX:     {args.calls} x jax.grad(loss)(w):")
    for i, g in enumerate(fresh, 1):
        print(f"  call {i}: {g}")
    print(f"  explicit accumulation with jax.tree.map(jnp.add, ...): {total}")
    print("Differs: PyTorch keeps gradient state on the tensor and adds to it (k-th call")
    print("  holds k times the gradient); JAX's gradient is a return value, so accumulation")
    print("  happens only where it is written.")
    for k, g in enumerate(seen, 1):
        np.testing.assert_allclose(g, k * fresh[0], rtol=1e-6)
    np.testing.assert_allclose(total, args.calls * fresh[0], rtol=1e-6)
    return {"torch_grads": [g.tolist() for g in seen], "jax_grad": fresh[0].tolist()}


if __name__ == "__main__":
    main()
