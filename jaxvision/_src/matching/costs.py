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


def fit_range(cost: jax.Array, row_active: jax.Array, n_pairs: int) -> jax.Array:
    """Scales each problem by a power of two ``2^-k`` (``k >= 0``) into a safe range.

    The stand-in for non-finite entries (:func:`replacement_cost`) grows like
    ``(4 K + 3) max|cost|`` for ``K = n_pairs``; for it to stay below its cap and sums of
    ``K + 1`` of them to stay finite, ``max|cost|`` must stay below
    ``finfo.max / (16 (2 K + 3) (K + 1))`` (about 1e33 in float32 for ``K = 100``). Larger
    problems are scaled down: the optimal assignment is unchanged by a positive factor,
    and a power of two is exact, so ordinary costs (factor 1) are untouched.

    Args:
      cost: ``[B, M, N]`` float costs, rows last (see :func:`finite_costs`).
      row_active: ``[B, N]`` bool; only active rows' finite entries set the scale.
      n_pairs: an upper bound on the number of pairs an assignment holds.
    """
    considered = jnp.isfinite(cost) & row_active[:, None, :]
    largest = jnp.max(jnp.where(considered, jnp.abs(cost), 0), axis=(1, 2))
    limit = np.finfo(cost.dtype).max / (16 * (2 * n_pairs + 3) * (n_pairs + 1))
    _, e_largest = jnp.frexp(largest)
    _, e_limit = np.frexp(limit)
    k = jnp.maximum(e_largest - int(e_limit) + 1, 0)
    return cost * jnp.ldexp(jnp.ones((), cost.dtype), -k)[:, None, None]


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
