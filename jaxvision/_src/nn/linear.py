"""The dense layer with Xavier-uniform weights that transformer layers use."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


def xavier_linear(
    in_features: int, out_features: int, *, dtype: jnp.dtype | None, rngs: nnx.Rngs
) -> nnx.Linear:
    """``nnx.Linear`` with Xavier-uniform kernel and zero bias (DETR's transformer init).

    Reference: Glorot & Bengio, "Understanding the difficulty of training deep feedforward
    neural networks", AISTATS 2010; DETR initialises its transformer this way.
    """
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=nnx.initializers.xavier_uniform(),
        dtype=dtype,
        rngs=rngs,
    )
