"""A second backward without ``retain_graph``, against re-using a ``jax.vjp`` function.

    python experiments/contrast/retain_graph.py

PyTorch frees the graph's saved tensors during ``backward()``; a second ``backward()``
through the same graph raises ("Trying to backward through the graph a second time")
unless the first passed ``retain_graph=True``. JAX: ``jax.vjp`` returns the primal output
and a function closing over the residuals; it can be called any number of times, with any
cotangent (the residuals live as long as the function does).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch


def torch_side(x, cotangents):
    xt = torch.tensor(x, requires_grad=True)
    y = torch.sin(xt) * xt
    y.backward(torch.tensor(cotangents[0]))
    try:
        y.backward(torch.tensor(cotangents[1]))
    except RuntimeError as error:
        failed = str(error).split(".")[0]
    else:
        failed = "no error"
    xt.grad = None
    y = torch.sin(xt) * xt
    grads = []
    for ct in cotangents:
        xt.grad = None
        y.backward(torch.tensor(ct), retain_graph=True)
        grads.append(xt.grad.numpy().copy())
    return failed, grads


def jax_side(x, cotangents):
    y, vjp = jax.vjp(lambda x: jnp.sin(x) * x, jnp.asarray(x))
    return np.asarray(y), [np.asarray(vjp(jnp.asarray(ct))[0]) for ct in cotangents]


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args(argv)
    x = np.linspace(0.1, 1.0, args.n, dtype=np.float32)
    cotangents = [np.ones_like(x), np.arange(1, args.n + 1, dtype=np.float32)]
    failed, torch_grads = torch_side(x, cotangents)
    _, jax_grads = jax_side(x, cotangents)
    print("PyTorch: y.backward(ct1); y.backward(ct2)")
    print(f"  -> RuntimeError: {failed}")
    print("  with retain_graph=True on each call (and zeroing .grad in between):")
    for g in torch_grads:
        print(f"     {g}")
    print("JAX:     y, vjp = jax.vjp(f, x); vjp(ct1); vjp(ct2)")
    for g in jax_grads:
        print(f"     {g}")
    print("Differs: PyTorch's graph is consumed by backward unless told to keep it; a JAX")
    print("  vjp function is an ordinary closure, reusable and free to be garbage collected.")
    for a, b in zip(torch_grads, jax_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    return {"torch_error": failed, "jax_grads": [g.tolist() for g in jax_grads]}


if __name__ == "__main__":
    main()
