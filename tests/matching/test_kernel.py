"""The CUDA solver (one Pallas program per problem), run in the Pallas interpreter.

The kernel is what ``hungarian_match`` runs on CUDA GPUs; here its logic is checked on the
CPU against scipy, and its lowering to Triton is checked without a GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from jaxvision import matching
from jaxvision._src.matching import augmenting_path
from tests.matching.problems import assert_same_total, detr_like_costs, padding_mask


def solve_in_interpreter(costs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[B, Q, T]`` costs, ``[B, T]`` rows to assign -> ``[B, T]`` column of each row."""
    fn = jax.jit(
        lambda c, m: augmenting_path._solve_with_kernel(c, m, n_pairs=c.shape[2], interpret=True)
    )
    col4row, row4col = jax.device_get(fn(costs, mask))
    for r4c, c4r, real in zip(row4col, col4row, mask, strict=True):
        rows = np.flatnonzero(real)
        assert np.all(c4r[~real] == -1) and len(set(c4r[rows].tolist())) == len(rows)
        assert np.array_equal(r4c[c4r[rows]], rows), "col4row and row4col disagree"
        assert (r4c >= 0).sum() == len(rows)
    return col4row


def check_against_scipy(costs: np.ndarray, mask: np.ndarray) -> None:
    col4row = solve_in_interpreter(costs, mask)
    for c, real, c4r in zip(costs.astype(np.float64), mask, col4row, strict=True):
        sub = c[:, real]
        ref = sub[scipy_lsa(sub)].sum() if sub.size else 0.0
        scale = np.abs(sub).mean() if sub.size else 1.0
        assert_same_total(c[c4r[real], np.flatnonzero(real)].sum(), ref, scale)


def test_detr_like_costs_with_padding():
    rng = np.random.default_rng(20)
    check_against_scipy(detr_like_costs(rng, 300, 100, 20), padding_mask(rng, 300, 20, low=0))


def test_integer_costs_with_many_ties():
    rng = np.random.default_rng(21)
    costs = rng.integers(0, 4, (300, 16, 16)).astype(np.float32)
    check_against_scipy(costs, np.ones((300, 16), bool))


@pytest.mark.parametrize("shape", [(17, 6), (6, 6), (40, 33)])
def test_shapes_that_are_not_powers_of_two(shape):
    rng = np.random.default_rng(22)
    costs = rng.normal(size=(200, *shape)).astype(np.float32)
    check_against_scipy(costs, padding_mask(rng, 200, shape[1], low=0))


def test_non_finite_costs_are_replaced():
    rng = np.random.default_rng(23)
    costs = rng.uniform(size=(50, 12, 5)).astype(np.float32)
    costs[rng.uniform(size=costs.shape) < 0.2] = np.nan
    costs[:, :3, 0] = np.inf
    mask = np.ones((50, 5), bool)
    col4row = solve_in_interpreter(costs, mask)
    expected, _ = jax.device_get(matching.hungarian_match(costs, mask))
    big = np.where(np.isfinite(costs), costs, 1e6).astype(np.float64)
    for b in range(50):
        got = big[b, col4row[b], np.arange(5)].sum()
        want = big[b, expected[b], np.arange(5)].sum()
        assert abs(got - want) < 1e-6, (b, got, want)


def test_lowers_to_triton_for_cuda():
    # Lowering (jaxpr -> Triton IR) needs no GPU; compiling the IR to PTX happens on one.
    rng = np.random.default_rng(24)
    costs = jnp.asarray(detr_like_costs(rng, 4, 100, 20))
    mask = jnp.asarray(padding_mask(rng, 4, 20))
    lowered = (
        jax.jit(matching.hungarian_match).trace(costs, mask).lower(lowering_platforms=("cuda",))
    )
    assert "jaxvision_augmenting_path" in lowered.as_text()


def test_forbidden_columns_stay_forbidden():
    # More targets than queries: hungarian_match pads the queries and forbids the padding
    # with +inf, then solves with already finite costs (no replacement): +inf must stay
    # forbidden in the kernel.
    rng = np.random.default_rng(25)
    costs = rng.uniform(size=(100, 12, 6)).astype(np.float32)
    costs[:, 8:, :] = np.inf  # 8 allowed columns for 6 rows
    mask = padding_mask(rng, 100, 6, low=0)
    fn = jax.jit(lambda c, m: augmenting_path._solve_with_kernel(c, m, None, interpret=True))
    col4row, _ = jax.device_get(fn(costs, mask))
    for c, real, c4r in zip(costs.astype(np.float64), mask, col4row, strict=True):
        assert np.all(c4r[real] < 8)
        sub = c[:8, real]
        ref = sub[scipy_lsa(sub)].sum() if sub.size else 0.0
        assert_same_total(c[c4r[real], np.flatnonzero(real)].sum(), ref, 1.0)
