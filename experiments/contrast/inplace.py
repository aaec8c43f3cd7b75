"""In-place edit of a tensor autograd saved, against JAX's immutable arrays and ``.at[]``.

    python experiments/contrast/inplace.py

PyTorch: ``y = x.sigmoid()`` saves its output ``y`` for the backward pass
(``d sigmoid = y (1 - y)``); editing ``y`` in place bumps its version counter and
``backward()`` then refuses ("one of the variables needed for gradient computation has been
modified by an inplace operation"). JAX: arrays are immutable; ``y.at[0].set(...)`` returns
a new array, the value the gradient needs is untouched, and the gradient is the one of the
program as written. XLA turns the copy into an in-place update when the old value is dead.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch


def torch_side(x):
    xt = torch.tensor(x, requires_grad=True)
    y = xt.sigmoid()
    y[0] = 10.0  # in place, on a tensor sigmoid saved for its backward
    try:
        y.sum().backward()
    except RuntimeError as error:
        return str(error).split(":")[0]
    return "no error"


def jax_side(x):
    def f(x):
        y = jax.nn.sigmoid(x)
        return y.at[0].set(10.0).sum()  # a new array; y itself is unchanged

    return np.asarray(jax.grad(f)(jnp.asarray(x)))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args(argv)
    x = np.linspace(-1.0, 1.0, args.n, dtype=np.float32)
    torch_error = torch_side(x)
    grad = jax_side(x)
    s = 1 / (1 + np.exp(-x))
    want = s * (1 - s)
    want[0] = 0.0  # element 0 was overwritten by a constant
    print("PyTorch: y = x.sigmoid(); y[0] = 10; y.sum().backward()")
    print(f"  -> RuntimeError: {torch_error}")
    print("JAX:     jax.grad(lambda x: jax.nn.sigmoid(x).at[0].set(10.).sum())(x)")
    print(f"  -> {np.array2string(grad, precision=4)}")
    print("Differs: PyTorch mutates shared storage and detects it at backward time (a")
    print("  version counter); JAX has no mutation, so the edit is just another op and the")
    print("  gradient is exact: 0 for the overwritten element, sigmoid' elsewhere.")
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    return {"torch_error": torch_error, "jax_grad": grad.tolist()}


if __name__ == "__main__":
    main()
