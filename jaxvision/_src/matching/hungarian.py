"""Exact minimum-cost assignment inside ``jit``: scipy's ``linear_sum_assignment`` and the
batched set-prediction matcher used by DETR."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.matching.augmenting_path import solve_rows
from jaxvision._src.matching.costs import (
    check_costs_and_mask,
    finite_costs,
    fit_range,
    working_dtype,
)

METHODS = ("auto", "xla")


def _check_method(method: str) -> bool:
    """``method`` validated; returns whether the device's own kernel runs (Pallas on CUDA,
    C++ on the CPU) rather than XLA alone."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method == "auto"


@export("matching.linear_sum_assignment")
@functools.partial(jax.jit, static_argnames=("maximize", "method"))
def linear_sum_assignment(
    cost: ArrayLike, *, maximize: bool = False, method: str = "auto"
) -> tuple[jax.Array, jax.Array]:
    """Exact minimum (or maximum) cost assignment, like ``scipy.optimize.linear_sum_assignment``.

    Rectangular matrices are allowed: ``K = min(N, M)`` pairs are returned, every row
    assigned when ``N <= M``, every column when ``N > M``. Leading batch dimensions are
    solved together in one loop.

    Args:
      cost: ``[..., N, M]`` real costs (float or integer). NaN and +-inf entries are avoided
        whenever possible: they become a large finite cost of the minimisation (of ``-cost``
        with ``maximize``), as in ``hungarian_match``.
      maximize: maximise the total instead of minimising it.
      method: static backend choice, as in :func:`hungarian_match`.

    Returns:
      ``(row_ind, col_ind)``: ``[..., K]`` int32 each, ``row_ind`` increasing, so that
      ``cost[..., row_ind, col_ind].sum(-1)`` is optimal. Ties may be broken differently
      from scipy; the total is the same.

    Computed in float32 (float64 for float64 input). Integer costs are exact up to 2**24.

    Reference: D. F. Crouse, "On implementing 2D rectangular assignment algorithms",
    IEEE TAES 52(4), 2016 (the algorithm scipy uses).

    Examples:
      >>> linear_sum_assignment(jnp.array([[4.0, 1, 3], [2, 0, 5], [3, 2, 2]]))
      (Array([0, 1, 2], dtype=int32), Array([1, 0, 2], dtype=int32))
    """
    gpu_kernel = _check_method(method)
    cost = jnp.asarray(cost)
    if cost.ndim < 2:
        raise ValueError(f"cost must have shape [..., N, M], got shape {cost.shape}")
    dtype = working_dtype(cost.dtype)
    *lead, n, m = cost.shape
    k = min(n, m)
    if k == 0:
        empty = jnp.zeros((*lead, 0), jnp.int32)
        return empty, empty
    c = cost.astype(dtype).reshape(-1, n, m)
    if maximize:
        c = -c
    transposed = n > m
    if not transposed:
        c = jnp.swapaxes(c, 1, 2)  # the solver's layout: [B, columns, rows]
    rows = jnp.ones((c.shape[0], c.shape[2]), bool)
    col4row, _ = solve_rows(c, rows, n_pairs=k, gpu_kernel=gpu_kernel)
    if transposed:
        order = jnp.argsort(col4row, axis=1).astype(jnp.int32)
        row_ind = jnp.take_along_axis(col4row, order, axis=1)
        col_ind = order
    else:
        row_ind = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), col4row.shape)
        col_ind = col4row
    return row_ind.reshape(*lead, k), col_ind.reshape(*lead, k)


@export("matching.hungarian_match")
@functools.partial(jax.jit, static_argnames=("method",))
def hungarian_match(
    costs: ArrayLike, target_mask: ArrayLike, *, method: str = "auto"
) -> tuple[jax.Array, jax.Array]:
    """Exact batched bipartite matching of queries to padded targets, on device.

    For each image, every real target gets a distinct query so that the sum of the matched
    costs is minimal (the Hungarian matching of DETR); padded targets get none. With more
    real targets than queries, every query gets a distinct real target instead.

    Args:
      costs: ``[B, Q, T]`` cost of assigning query ``q`` to target ``t`` (float or integer;
        entries of padded targets are ignored). NaN, +inf and -inf are treated as a large
        finite cost: ``hi + 2 * (K * (hi - lo) + |hi| + 1)`` with ``hi``/``lo`` the largest and
        smallest finite real-target entries of that image and ``K = min(Q, T)``, so a
        matching that avoids them is always preferred when one exists (costs too large
        for that, past about 1e33 in float32, are first scaled by a power of two).
      target_mask: ``[B, T]`` bool, True for real targets (padding is False).
      method: static backend choice. ``"auto"`` (default): the device's fastest solver,
        chosen at lowering time: on the CPU, for float32 costs, a C++ solver (an XLA FFI
        call, ``jaxvision/_src/native/assignment.cc``: the same algorithm in double
        precision, the problems spread over XLA's threads; compiled on first use, else
        skipped: docs/native.md); one Pallas kernel on CUDA GPUs; XLA elsewhere.
        ``"xla"``: XLA only (on the CPU rounds of the unsolved problems, on CUDA a flat
        loop). Both give an optimal matching.

    Returns:
      ``(query_of_target, target_of_query)``: ``[B, T]`` int32 query matched to each target
      and ``[B, Q]`` int32 target matched to each query, -1 where unmatched. Images with no
      real target give all -1.

    Gradients do not flow through the matching (the costs are wrapped in
    ``stop_gradient``); compute the loss from the returned indices. Computed in float32
    (float64 for float64 input); ties may be broken differently from scipy, the total cost
    is the same.

    Reference: N. Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020;
    D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 2016.

    Examples:
      >>> costs = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]])  # [B=1, Q=3, T=2]
      >>> hungarian_match(costs, jnp.array([[True, True]]))
      (Array([[1, 0]], dtype=int32), Array([[ 1,  0, -1]], dtype=int32))
    """
    gpu_kernel = _check_method(method)
    costs = jnp.asarray(costs)
    target_mask = jnp.asarray(target_mask)
    check_costs_and_mask(costs, target_mask, "hungarian_match")
    dtype = working_dtype(costs.dtype)
    b, q, t = costs.shape
    mask = target_mask.astype(bool)
    none_t = jnp.full((b, t), -1, jnp.int32)
    none_q = jnp.full((b, q), -1, jnp.int32)
    if q == 0 or t == 0 or b == 0:
        return none_t, none_q
    # Targets are the rows to assign, queries the columns: [B, Q, T] is the solver's layout.
    c = jax.lax.stop_gradient(costs).astype(dtype)
    if t <= q:  # scaled by fit_range (1 unless costs pass ~1e33) on the XLA paths
        col4row, row4col = solve_rows(c, mask, n_pairs=t, gpu_kernel=gpu_kernel)
        query_of_target = jnp.where(mask, col4row, -1)
        return query_of_target, row4col
    c = fit_range(c, mask, q)
    return _match_more_targets_than_queries(finite_costs(c, mask, q), mask, gpu_kernel)


def _match_more_targets_than_queries(
    c: jax.Array, mask: jax.Array, gpu_kernel: bool
) -> tuple[jax.Array, jax.Array]:
    """``T > Q``: pads queries to ``T`` and, per image, lets the smaller side be the rows.

    Args:
      c: ``[B, Q, T]`` finite costs.
      mask: ``[B, T]`` real targets.
    """
    b, q, t = c.shape
    inf = jnp.asarray(jnp.inf, c.dtype)
    query_real = jnp.arange(t) < q
    square = jnp.pad(c, ((0, 0), (0, t - q), (0, 0)))  # [B, T, T]: padded queries x targets
    # Targets as rows, queries as columns: padded query columns are forbidden.
    by_target = jnp.where(query_real[None, :, None], square, inf)
    # Queries as rows, targets as columns: padded target columns are forbidden.
    by_query = jnp.where(mask[:, :, None], jnp.swapaxes(square, 1, 2), inf)
    flip = jnp.sum(mask, axis=1) > q
    rows = jnp.where(flip[:, None], query_real[None, :], mask)
    col4row, row4col = solve_rows(
        jnp.where(flip[:, None, None], by_query, by_target), rows, gpu_kernel=gpu_kernel
    )
    query_of_target = jnp.where(flip[:, None], row4col, col4row)
    target_of_query = jnp.where(flip[:, None], col4row, row4col)[:, :q]
    query_of_target = jnp.where(mask, query_of_target, -1)
    return query_of_target.astype(jnp.int32), target_of_query.astype(jnp.int32)
