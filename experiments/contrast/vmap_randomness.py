"""Randomness under vmap: ``torch.func.vmap(randomness=...)`` against explicit JAX keys.

    python experiments/contrast/vmap_randomness.py

PyTorch draws from a global generator; under ``torch.func.vmap`` a random op raises
unless ``randomness="different"`` (each batch element its own draw) or ``"same"`` (one
draw broadcast) is chosen. JAX has no global state: the function takes a key, and the
caller decides by what it maps over: split keys give different draws, one key gives the
same draw, and the same keys always give the same numbers.
"""

import argparse

import jax
import numpy as np
import torch


def torch_side(batch):
    def noisy(x):
        return x + torch.rand(())

    x = torch.zeros(batch)
    try:
        torch.func.vmap(noisy)(x)
    except RuntimeError as error:
        refused = str(error).split(".")[0]
    else:
        refused = "no error"
    different = torch.func.vmap(noisy, randomness="different")(x).numpy()
    same = torch.func.vmap(noisy, randomness="same")(x).numpy()
    return refused, different, same


def jax_side(batch):
    def noisy(x, key):
        return x + jax.random.uniform(key, ())

    x = np.zeros(batch, np.float32)
    keys = jax.random.split(jax.random.key(0), batch)
    different = np.asarray(jax.vmap(noisy)(x, keys))
    same = np.asarray(jax.vmap(noisy, in_axes=(0, None))(x, jax.random.key(0)))
    again = np.asarray(jax.vmap(noisy)(x, keys))
    return different, same, again


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args(argv)
    refused, t_diff, t_same = torch_side(args.batch)
    j_diff, j_same, j_again = jax_side(args.batch)
    print(f"PyTorch: torch.func.vmap(f) with torch.rand inside -> RuntimeError: {refused}")
    print(f"  randomness='different': {np.round(t_diff, 3)}; 'same': {np.round(t_same, 3)}")
    print(f"JAX:     vmap over split keys: {np.round(j_diff, 3)}")
    print(f"         one key, in_axes=None:  {np.round(j_same, 3)}")
    print(f"         the same keys again:    {np.round(j_again, 3)}")
    print("Differs: PyTorch's choice is a vmap flag over hidden global state; in JAX it is")
    print("  the data you pass, reproducible by construction.")
    assert len(set(t_diff.tolist())) == args.batch and len(set(t_same.tolist())) == 1
    assert len(set(j_diff.tolist())) == args.batch and len(set(j_same.tolist())) == 1
    np.testing.assert_array_equal(j_diff, j_again)
    return {"torch_error": refused, "jax_different": j_diff.tolist()}


if __name__ == "__main__":
    main()
