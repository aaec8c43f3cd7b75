"""Checks and sanitising of cost matrices shared by the exact and greedy matchers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def working_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """The float dtype the solvers compute in: float32, or float64 for float64 input."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"costs must be real, got dtype {dtype}")
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(f"costs must be a real float or integer array, got dtype {dtype}")
    return jnp.promote_types(dtype, jnp.float32)


def check_costs_and_mask(costs: jax.Array, target_mask: jax.Array, name: str) -> None:
    """Trace-time checks of ``costs: [B, Q, T]`` and ``target_mask: [B, T]``."""
    if costs.ndim != 3:
        raise ValueError(f"{name}: costs must have shape [B, Q, T], got shape {costs.shape}")
    working_dtype(costs.dtype)
    b, _, t = costs.shape
    if target_mask.shape != (b, t):
        raise ValueError(
            f"{name}: target_mask must have shape [B, T] = {(b, t)} to match costs "
            f"{costs.shape}, got {target_mask.shape}"
        )
    if not (target_mask.dtype == jnp.bool_ or jnp.issubdtype(target_mask.dtype, jnp.integer)):
        raise TypeError(
            f"{name}: target_mask must be bool (or 0/1 integers), got {target_mask.dtype}"
        )


def finite_costs(cost: jax.Array, row_active: jax.Array, n_pairs: int) -> jax.Array:
    """Replaces NaN and +-inf entries by a large finite cost, per problem.

    Args:
      cost: ``[B, M, N]`` float costs, ``cost[b, j, i]`` for row ``i`` and column ``j`` (the
        ``[B, Q, T]`` layout with targets as rows).
      row_active: ``[B, N]`` bool; only active rows' finite entries set the scale.
      n_pairs: an upper bound on the number of pairs an assignment holds.

    Returns:
      ``[B, M, N]`` with every non-finite entry replaced by
      ``big = hi + 2 * (n_pairs * (hi - lo) + |hi| + 1)`` where ``hi`` and ``lo`` are the
      largest and smallest finite active entries of that problem (0 when there are none).
      Since ``big - hi > n_pairs * (hi - lo)``, an assignment using fewer non-finite entries
      always has the lower total cost.
    """
    # One cheap reduction decides whether the masks below are needed: the sum is finite
    # unless an entry is not (or the sum overflows, which takes the exact path too).
    return lax.cond(
        jnp.isfinite(jnp.sum(cost)), lambda c: c, lambda c: _replace(c, row_active, n_pairs), cost
    )


def _replace(cost: jax.Array, row_active: jax.Array, n_pairs: int) -> jax.Array:
    big = replacement_cost(cost, row_active, n_pairs)
    return jnp.where(jnp.isfinite(cost), cost, big[:, None, None])


def replacement_cost(cost: jax.Array, row_active: jax.Array, n_pairs: int) -> jax.Array:
    """The large finite cost that stands for NaN and +-inf entries, per problem.

    Args:
      cost: ``[B, M, N]`` float costs, rows last (see :func:`finite_costs`).
      row_active: ``[B, N]`` bool; only active rows' finite entries set the scale.
      n_pairs: an upper bound on the number of pairs an assignment holds.

    Returns:
      ``[B]``: ``hi + 2 * (n_pairs * (hi - lo) + |hi| + 1)``, at most ``finfo.max / 8``.
    """
    finite = jnp.isfinite(cost)
    considered = finite & row_active[:, None, :]
    any_finite = jnp.any(considered, axis=(1, 2))
    hi = jnp.max(jnp.where(considered, cost, -jnp.inf), axis=(1, 2))
    lo = jnp.min(jnp.where(considered, cost, jnp.inf), axis=(1, 2))
    hi = jnp.where(any_finite, hi, 0)
    lo = jnp.where(any_finite, lo, 0)
    big = hi + 2 * (n_pairs * (hi - lo) + jnp.abs(hi) + 1)
    return jnp.minimum(big, np.finfo(cost.dtype).max / 8)
