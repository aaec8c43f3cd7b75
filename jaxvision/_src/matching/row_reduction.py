"""Augmenting row reduction: rounds of parallel zero-slack bids that leave few rows free.

Jonker and Volgenant start their shortest-augmenting-path solver with an auction-like
pass: a free row ``i`` bids for its cheapest column ``j1`` under the column duals ``v``,
lowering ``v[j1]`` by the gap ``w2 - w1`` between its two smallest reduced costs, so that
``j1`` stays a minimum of row ``i`` (at ``w2``); the column's previous owner becomes free.
Here the first ``bidders`` free rows of every problem bid at once (a Jacobi round, one loop
step): among the rows that bid for the same column the largest gap wins, the others stay
free.

Every round keeps the invariant the searches of :mod:`augmenting_path` need: each assigned
row sits at a minimum of ``cost - v`` over its columns (``v`` only ever decreases, and a
winner's column is lowered by exactly its own gap). So the result is an exact start for
the shortest-path searches, whatever the number of rounds; rounds only cut the number of
rows left to search for. On dense problems the searches of the last rows are the long
ones, which is what the rounds save.

Reference: R. Jonker and A. Volgenant, "A shortest augmenting path algorithm for dense and
sparse linear assignment problems", Computing 38, 1987 (augmenting row reduction);
D. P. Bertsekas, "The auction algorithm", Annals of Operations Research 14, 1988.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def reduce_free_rows(
    rows: jax.Array,
    row_active: jax.Array,
    col4row: jax.Array,
    row4col: jax.Array,
    *,
    rounds: int,
    bidders: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Up to ``rounds`` rounds of parallel augmenting row reduction after the greedy start.

    Args:
      rows: ``[B, N, M]`` costs, ``rows[b, i, j]`` for row ``i`` and column ``j`` (each row
        contiguous); finite but for ``+inf`` at forbidden columns.
      row_active: ``[B, N]`` bool rows to assign.
      col4row: ``[B, N]`` int32 column of each row, -1 where free; every assigned row at
        its row minimum of ``cost`` (the greedy start).
      row4col: ``[B, M]`` int32 row of each column, -1 where free.
      rounds: static bound on the number of rounds; they stop earlier once no problem
        has more than ``_FREE_LEFT`` free rows.
      bidders: static number of free rows of each problem that bid in a round (the
        first ones; the others wait for a later round).

    Returns:
      ``(col4row, row4col, v)``: the new partial assignment and the ``[B, M]`` column duals
      under which every assigned row sits at its row minimum of ``cost - v``.
    """
    b, n, m = rows.shape
    dtype = rows.dtype
    f = min(bidders, n)
    iota_f = jnp.arange(f, dtype=jnp.int32)
    iota_m = jnp.arange(m, dtype=jnp.int32)
    image = jnp.arange(b)[:, None]

    def unfinished(carry: tuple) -> jax.Array:
        col4row, _, _, r = carry
        free = jnp.sum(row_active & (col4row < 0), axis=1)
        return (r < rounds) & jnp.any(free > _FREE_LEFT)

    def one_round(carry: tuple) -> tuple:
        col4row, row4col, v, r = carry
        # The first `f` free rows of each problem bid; the others wait for a later round.
        free = row_active & (col4row < 0)
        rank = jnp.cumsum(free, axis=1, dtype=jnp.int32) - 1
        bidder = (
            jnp.full((b, f), n, jnp.int32)
            .at[image, jnp.where(free, rank, f)]
            .set(jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n)), mode="drop")
        )
        valid = bidder < n
        reduced = rows[image, jnp.minimum(bidder, n - 1)] - v[:, None, :]  # [B, f, M]
        w1 = jnp.min(reduced, axis=2)
        j1 = jnp.min(jnp.where(reduced == w1[..., None], iota_m, m), axis=2)
        j1 = jnp.minimum(j1, m - 1)
        w2 = jnp.min(jnp.where(iota_m == j1[..., None], jnp.inf, reduced), axis=2)
        gap = jnp.where(jnp.isfinite(w2) & jnp.isfinite(w1), w2 - w1, 0)
        bid = jnp.where(valid, gap, -1)
        top = jnp.full((b, m), -1, dtype).at[image, j1].max(bid)
        tops = valid & (bid == jnp.take_along_axis(top, j1, axis=1))
        first = jnp.full((b, m), f, jnp.int32).at[image, j1].min(jnp.where(tops, iota_f, f))
        wins = tops & (jnp.take_along_axis(first, j1, axis=1) == iota_f)
        old = jnp.take_along_axis(row4col, j1, axis=1)
        col4row = col4row.at[image, jnp.where(wins & (old >= 0), old, n)].set(-1, mode="drop")
        col4row = col4row.at[image, jnp.where(wins, bidder, n)].set(j1, mode="drop")
        at = jnp.where(wins, j1, m)
        row4col = row4col.at[image, at].set(bidder, mode="drop")
        return col4row, row4col, v.at[image, at].add(-gap, mode="drop"), r + 1

    # An exact zero that varies like `cost` inside shard_map (loop carries must match).
    v = jnp.zeros((b, m), dtype) + jnp.sum(rows[:, :0, :0]).astype(dtype)
    r = jnp.zeros((), jnp.int32) + jnp.sum(col4row[:, :0])
    col4row, row4col, v, _ = lax.while_loop(unfinished, one_round, (col4row, row4col, v, r))
    return col4row, row4col, v


# The rounds stop once no problem has more free rows than this (or after `rounds`).
_FREE_LEFT = 4
