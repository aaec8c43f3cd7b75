"""Greedy (approximate) bipartite matching, for comparison with the exact matcher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision._src.export import export
from jaxvision._src.matching.costs import check_costs_and_mask, finite_costs, working_dtype


@export("matching.greedy_match")
@jax.jit
def greedy_match(costs: jax.Array, target_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Greedy matching of queries to padded targets: NOT exact, a fast baseline.

    Repeatedly takes the cheapest remaining (query, real target) pair of each image and
    removes its query and target, ``min(Q, T)`` rounds. Every real target gets a distinct
    query (when ``Q >= T``), like ``hungarian_match``, but the total cost can be higher than
    the optimum; use it for comparisons, not for training a set-prediction model.

    Args:
      costs: ``[B, Q, T]`` cost of assigning query ``q`` to target ``t``; non-finite entries
        are treated as a large finite cost as in ``hungarian_match``.
      target_mask: ``[B, T]`` bool, True for real targets.

    Returns:
      ``(query_of_target, target_of_query)``: ``[B, T]`` and ``[B, Q]`` int32, -1 where
      unmatched.
    """
    costs = jnp.asarray(costs)
    target_mask = jnp.asarray(target_mask)
    check_costs_and_mask(costs, target_mask, "greedy_match")
    b, q, t = costs.shape
    query_of_target = jnp.full((b, t), -1, jnp.int32)
    target_of_query = jnp.full((b, q), -1, jnp.int32)
    if q == 0 or t == 0 or b == 0:
        return query_of_target, target_of_query
    mask = target_mask.astype(bool)
    c = lax.stop_gradient(costs).astype(working_dtype(costs.dtype))
    c = jnp.swapaxes(finite_costs(jnp.swapaxes(c, 1, 2), mask, min(q, t)), 1, 2)
    flat_size = q * t
    iota = jnp.arange(flat_size, dtype=jnp.int32)
    batch = jnp.arange(b)

    def round_(_, carry):
        query_of_target, target_of_query = carry
        free = (target_of_query < 0)[:, :, None] & (mask & (query_of_target < 0))[:, None, :]
        flat = jnp.where(free, c, jnp.inf).reshape(b, flat_size)
        low = jnp.min(flat, axis=1)
        k = jnp.min(jnp.where((flat == low[:, None]) & free.reshape(b, -1), iota, flat_size), 1)
        found = k < flat_size
        qi = jnp.where(found, k // t, q)
        ti = jnp.where(found, k % t, t)
        query_of_target = query_of_target.at[batch, ti].set(qi, mode="drop")
        target_of_query = target_of_query.at[batch, qi].set(ti, mode="drop")
        return query_of_target, target_of_query

    return lax.fori_loop(0, min(q, t), round_, (query_of_target, target_of_query))
