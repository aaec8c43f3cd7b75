"""The shortest-augmenting-path solver as one Pallas kernel: a GPU program per problem.

XLA runs a ``lax.while_loop`` on a GPU as a sequence of kernel launches per iteration (and a
copy of the loop predicate to the host), so each Dijkstra step of the batched XLA solver
costs tens of microseconds whatever the work. Here the whole search of a problem runs inside
one program of one kernel launch, its state in registers: the steps of a problem cost what
their arithmetic costs, and the problems of the batch run side by side on the GPU's cores.

The algorithm is the one of :mod:`augmenting_path` (Crouse's rectangular shortest
augmenting path with implied row duals), written for a single problem; the greedy start is
computed beforehand with XLA and passed in.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from jaxvision._src.jax_compat import output_like

_SEARCH, _AUGMENT, _DONE = 0, 1, 2


def solve_rows_kernel(
    rows: jax.Array,
    row_active: jax.Array,
    col4row: jax.Array,
    row4col: jax.Array,
    *,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Completes a greedy partial assignment of each problem in one kernel launch.

    Args:
      rows: ``[B, N, M]`` costs, row ``i`` of problem ``b`` contiguous (``rows[b, i, j]``);
        finite, except ``+inf`` at forbidden columns.
      row_active: ``[B, N]`` bool, rows to assign.
      col4row: ``[B, N]`` int32 start assignment, -1 where unassigned; every assigned row
        sits at its row minimum and no two rows share a column.
      row4col: ``[B, M]`` int32, its inverse, -1 at free columns.
      interpret: run the kernel in the Pallas interpreter (any device; for tests).

    Returns:
      ``(col4row [B, N], row4col [B, M])`` of a minimum-cost assignment of the active rows.
    """
    b, n, m = rows.shape
    n_pad, m_pad = pl.next_power_of_2(n), pl.next_power_of_2(m)  # Triton block shapes
    rows = jnp.pad(rows, ((0, 0), (0, n_pad - n), (0, m_pad - m)), constant_values=jnp.inf)
    active = jnp.pad(row_active.astype(jnp.int32), ((0, 0), (0, n_pad - n)))
    col4row = jnp.pad(col4row, ((0, 0), (0, n_pad - n)), constant_values=-1)
    row4col = jnp.pad(row4col, ((0, 0), (0, m_pad - m)), constant_values=-1)
    max_steps = n * (m + n + 1) + 1

    per_n = pl.BlockSpec((None, n_pad), lambda k: (k, 0))
    per_m = pl.BlockSpec((None, m_pad), lambda k: (k, 0))
    kwargs = {}
    if not interpret:
        from jax.experimental.pallas import triton as plgpu

        kwargs["compiler_params"] = plgpu.CompilerParams(num_warps=1, num_stages=1)
    col4row, row4col = pl.pallas_call(
        functools.partial(_kernel, max_steps=max_steps),
        out_shape=(
            output_like(rows, (b, n_pad), jnp.int32),
            output_like(rows, (b, m_pad), jnp.int32),
        ),
        grid=(b,),
        in_specs=[
            pl.BlockSpec((None, n_pad, m_pad), lambda k: (k, 0, 0)),
            per_n,
            per_n,
            per_m,
        ],
        out_specs=(per_n, per_m),
        interpret=interpret,
        name="jaxvision_augmenting_path",
        **kwargs,
    )(rows, active, col4row, row4col)
    return col4row[:, :n], row4col[:, :m]


def _kernel(rows_ref, active_ref, col4row_ref, row4col_ref, col4row_out, row4col_out, *, max_steps):
    n_pad, m_pad = rows_ref.shape
    dtype = rows_ref.dtype
    inf = jnp.asarray(jnp.inf, dtype)
    iota_m = lax.broadcasted_iota(jnp.int32, (m_pad,), 0)
    iota_n = lax.broadcasted_iota(jnp.int32, (n_pad,), 0)
    active = active_ref[...] != 0

    def pick(vec: jax.Array, iota: jax.Array, index: jax.Array) -> jax.Array:
        """``vec[index]`` as a masked reduction (no dynamic indexing of registers)."""
        return jnp.sum(jnp.where(iota == index, vec, jnp.zeros((), vec.dtype)), dtype=vec.dtype)

    def row_of(i: jax.Array) -> jax.Array:
        return rows_ref[pl.ds(i, 1), :].reshape(m_pad)

    def next_row(col4row: jax.Array) -> jax.Array:
        return jnp.min(jnp.where(active & (col4row < 0), iota_n, n_pad))

    col4row = col4row_ref[...]
    row4col = row4col_ref[...]
    cur = next_row(col4row)
    zero_i = jnp.int32(0)
    zero_f = jnp.zeros((), dtype)
    state = (
        jnp.where(cur < n_pad, jnp.int32(_SEARCH), jnp.int32(_DONE)),  # phase
        cur,
        jnp.minimum(cur, n_pad - 1),  # i: row being scanned
        zero_f,  # ui: its dual
        zero_f,  # min_val
        jnp.full((m_pad,), inf, dtype),  # spc: shortest path cost to each column
        jnp.zeros((m_pad,), jnp.int32),  # path: previous row on the shortest path
        jnp.zeros((m_pad,), jnp.int32),  # scanned (0/1)
        zero_i,  # aug_j
        col4row,
        row4col,
        jnp.zeros((m_pad,), dtype),  # v: column duals
        zero_i,  # steps
    )

    def cond(s):
        return (s[0] != _DONE) & (s[12] < max_steps)

    def body(s):
        phase, cur, i, ui, min_val, spc, path, scanned, aug_j, col4row, row4col, v, steps = s
        searching = phase == _SEARCH
        # One Dijkstra step from row i.
        reduced = min_val + row_of(i) - ui - v
        is_open = scanned == 0
        better = searching & is_open & (reduced < spc)
        spc = jnp.where(better, reduced, spc)
        path = jnp.where(better, i, path)
        open_spc = jnp.where(is_open, spc, inf)
        low = jnp.min(open_spc)
        key = jnp.where(open_spc == low, jnp.where(row4col < 0, iota_m, iota_m + m_pad), 2 * m_pad)
        j = jnp.min(key)
        j = jnp.minimum(jnp.where(j >= m_pad, j - m_pad, j), m_pad - 1)
        scanned = jnp.where(searching & (iota_m == j), 1, scanned)
        owner_j = pick(row4col, iota_m, j)
        sink = searching & (owner_j < 0)
        advance = searching & (owner_j >= 0)
        i_next = jnp.where(advance, owner_j, i)
        c_ij = pick(row_of(i_next), iota_m, j)
        ui = jnp.where(advance, c_ij - pick(v, iota_m, j), ui)
        min_val = jnp.where(searching, low, min_val)

        # A free column reached: update the column duals of the scanned columns.
        v = jnp.where(sink & (scanned != 0), v - (min_val - spc), v)

        # One augmentation step along the path back to the inserted row.
        augmenting = sink | (phase == _AUGMENT)
        aj = jnp.where(sink, j, aug_j)
        pi = pick(path, iota_m, aj)
        prev_j = pick(col4row, iota_n, pi)
        row4col = jnp.where(augmenting & (iota_m == aj), pi, row4col)
        col4row = jnp.where(augmenting & (iota_n == pi), aj, col4row)
        finished = augmenting & (pi == cur)

        # A finished row: start the next one.
        nxt = next_row(col4row)
        start = finished & (nxt < n_pad)
        phase = jnp.where(augmenting, jnp.int32(_AUGMENT), phase)
        phase = jnp.where(
            finished, jnp.where(nxt < n_pad, jnp.int32(_SEARCH), jnp.int32(_DONE)), phase
        )
        return (
            phase,
            jnp.where(finished, nxt, cur),
            jnp.where(start, nxt, i_next),
            jnp.where(start, zero_f, ui),
            jnp.where(start, zero_f, min_val),
            jnp.where(start, inf, spc),
            path,
            jnp.where(start, 0, scanned),
            prev_j,
            col4row,
            row4col,
            v,
            steps + 1,
        )

    out = lax.while_loop(cond, body, state)
    col4row_out[...] = out[9]
    row4col_out[...] = out[10]
