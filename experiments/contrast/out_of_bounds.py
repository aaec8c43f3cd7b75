"""Out-of-bounds indexing: PyTorch raises, JAX clamps a gather and drops a scatter.

    python experiments/contrast/out_of_bounds.py

PyTorch checks every index (``IndexError`` eagerly, a device assert on CUDA). JAX cannot
raise from inside a compiled program, so out-of-bounds indices follow a documented mode:
a gather (``x[i]``) clamps to the last valid index by default, a scatter
(``x.at[i].set``) drops the update; ``mode="fill"`` returns a fill value instead, and
``checkify`` turns the check back on when wanted.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch


def torch_side(n, index):
    try:
        torch.arange(n)[torch.tensor([index])]
    except IndexError as error:
        return str(error)
    return "no error"


def jax_side(n, index):
    x = jnp.arange(n)
    i = jnp.asarray([index])
    gathered = int(jax.jit(lambda x, i: x[i])(x, i)[0])
    filled = int(x.at[i].get(mode="fill", fill_value=-1)[0])
    scattered = np.asarray(x.at[i].set(100)).tolist()
    return gathered, filled, scattered


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    args = parser.parse_args(argv)
    index = args.n + 6
    torch_error = torch_side(args.n, index)
    gathered, filled, scattered = jax_side(args.n, index)
    print(f"PyTorch: torch.arange({args.n})[[{index}]] -> IndexError: {torch_error}")
    print(f"JAX:     jnp.arange({args.n})[[{index}]] under jit -> {gathered} (clamped)")
    print(f"         .at[[{index}]].get(mode='fill', fill_value=-1) -> {filled}")
    print(f"         .at[[{index}]].set(100) -> {scattered} (update dropped)")
    print("Differs: a compiled JAX program has no exceptions, so bounds are a semantic")
    print("  choice per call; a padded index (-1 or past the end) must be masked explicitly.")
    assert gathered == args.n - 1 and filled == -1 and scattered == list(range(args.n))
    return {"torch_error": torch_error, "gathered": gathered, "filled": filled}


if __name__ == "__main__":
    main()
