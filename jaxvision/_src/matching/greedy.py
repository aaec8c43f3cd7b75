"""Greedy (approximate) bipartite matching, for comparison with the exact matcher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.matching.costs import check_costs_and_mask, finite_costs, working_dtype


@export("matching.greedy_match")
@jax.jit
def greedy_match(costs: ArrayLike, target_mask: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Greedy matching of queries to padded targets: NOT exact, a baseline for comparisons.

    Repeatedly takes the cheapest remaining (query, real target) pair of each image and
    removes its query and target, ``min(Q, T)`` rounds. Every real target gets a distinct
    query (when ``Q >= T``), like ``hungarian_match``, but the total cost can be higher than
    the optimum; use it to compare matching quality, not for training a set-prediction
    model. It is not faster either: for DETR shapes ``hungarian_match`` took 0.42 ms
    against this function's 1.4 ms on a 2-core CPU, and 0.14 ms against 0.40 ms on an H100
    (``BENCHMARKS.md``), because each of the ``min(Q, T)`` rounds is a full pass over the
    costs.

    Args:
      costs: ``[B, Q, T]`` cost of assigning query ``q`` to target ``t``; non-finite entries
        are treated as a large finite cost as in ``hungarian_match``.
      target_mask: ``[B, T]`` bool, True for real targets.

    Returns:
      ``(query_of_target, target_of_query)``: ``[B, T]`` and ``[B, Q]`` int32, -1 where
      unmatched.

    Examples:
      >>> costs = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]])  # [B=1, Q=3, T=2]
      >>> greedy_match(costs, jnp.array([[True, True]]))
      (Array([[1, 0]], dtype=int32), Array([[ 1,  0, -1]], dtype=int32))
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
    c = finite_costs(c, mask, min(q, t))
    iota_q = jnp.arange(q, dtype=c.dtype)
    iota_t = jnp.arange(t, dtype=c.dtype)
    batch = jnp.arange(b)

    def first(at: jax.Array, iota: jax.Array, size: int) -> jax.Array:
        return jnp.min(jnp.where(at, iota, size), axis=-1).astype(jnp.int32)

    def round_(_, carry):
        query_of_target, target_of_query = carry
        open_t = mask & (query_of_target < 0)
        free_q = target_of_query < 0
        best = jnp.min(jnp.where(free_q[:, :, None], c, jnp.inf), axis=1)  # [B, T]
        best = jnp.where(open_t, best, jnp.inf)
        low = jnp.min(best, axis=1)
        ti = first(open_t & (best == low[:, None]), iota_t, t)
        column = c[batch, :, jnp.minimum(ti, t - 1)]  # [B, Q]
        qi = first(free_q & (column == low[:, None]), iota_q, q)
        found = (ti < t) & (qi < q)
        ti, qi = jnp.where(found, ti, t), jnp.where(found, qi, q)
        query_of_target = query_of_target.at[batch, ti].set(qi, mode="drop")
        target_of_query = target_of_query.at[batch, qi].set(ti, mode="drop")
        return query_of_target, target_of_query

    return lax.fori_loop(0, min(q, t), round_, (query_of_target, target_of_query))
