"""Exactness of jaxvision.matching against scipy.optimize.linear_sum_assignment.

Each kind of problem is checked on 1000 random instances solved in one jitted call; the
total cost of the returned assignment is computed in float64 from the original costs and
compared with scipy's (float64) optimum.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from jaxvision import matching

RTOL = 1e-6
N_PROBLEMS = 1000


def assert_same_total(mine: float, ref: float, scale: float) -> None:
    # Relative to the optimum, or to the problem's cost scale when the optimum is near 0.
    assert abs(mine - ref) <= RTOL * max(abs(ref), scale), (mine, ref)


def check_lsa_batch(cost: np.ndarray, maximize: bool = False) -> None:
    rows, cols = jax.device_get(matching.linear_sum_assignment(cost, maximize=maximize))
    _, n, m = cost.shape
    assert rows.shape == cols.shape == (len(cost), min(n, m))
    assert rows.dtype == cols.dtype == np.int32
    for c, r, k in zip(cost.astype(np.float64), rows, cols, strict=True):
        assert np.all(np.diff(r) > 0) and len(set(k.tolist())) == len(k)
        ref_r, ref_c = scipy_lsa(c, maximize=maximize)
        assert_same_total(c[r, k].sum(), c[ref_r, ref_c].sum(), np.abs(c).mean())


def check_match_batch(costs: np.ndarray, mask: np.ndarray) -> None:
    """Validity and optimality of hungarian_match's output, image by image."""
    q_of_t, t_of_q = jax.device_get(matching.hungarian_match(costs, mask))
    b, q, t = costs.shape
    assert q_of_t.shape == (b, t) and t_of_q.shape == (b, q)
    assert q_of_t.dtype == t_of_q.dtype == np.int32
    for c, real, qt, tq in zip(costs.astype(np.float64), mask, q_of_t, t_of_q, strict=True):
        targets = np.flatnonzero(qt >= 0)
        assert np.all(real[targets]), "a padded target was matched"
        assert len(targets) == min(real.sum(), q), "not every real target was matched"
        assert np.array_equal(tq[qt[targets]], targets), "the two outputs disagree"
        assert (tq >= 0).sum() == len(targets) and np.all(tq < t)
        sub = c[:, real]
        ref_q, ref_t = scipy_lsa(sub)
        scale = np.abs(sub).mean() if sub.size else 1.0
        assert_same_total(c[qt[targets], targets].sum(), sub[ref_q, ref_t].sum(), scale)


def random_boxes_cxcywh(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    centre = rng.uniform(0.05, 0.95, (*shape, 2))
    size = rng.uniform(0.02, 0.6, (*shape, 2))
    return np.concatenate([centre, size], axis=-1)


def detr_like_costs(rng: np.random.Generator, b: int, q: int, t: int) -> np.ndarray:
    """``5 * L1 - 2 * GIoU - prob`` between random predicted and target boxes: [B, Q, T]."""
    pred = random_boxes_cxcywh(rng, (b, q))
    tgt = random_boxes_cxcywh(rng, (b, t))
    l1 = np.abs(pred[:, :, None, :] - tgt[:, None, :, :]).sum(-1)

    def xyxy(x):
        return np.concatenate([x[..., :2] - x[..., 2:] / 2, x[..., :2] + x[..., 2:] / 2], -1)

    p, g = xyxy(pred)[:, :, None, :], xyxy(tgt)[:, None, :, :]
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    lt, rb = np.maximum(p[..., :2], g[..., :2]), np.minimum(p[..., 2:], g[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    union = area_p + area_g - inter
    hull = np.prod(np.maximum(p[..., 2:], g[..., 2:]) - np.minimum(p[..., :2], g[..., :2]), -1)
    giou = inter / union - (hull - union) / hull
    logits = rng.normal(size=(b, q, 92))
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 91, (b, t))
    class_cost = -np.take_along_axis(prob, labels[:, None, :].repeat(q, 1), axis=2)
    return (5 * l1 - 2 * giou + class_cost).astype(np.float32)


def padding_mask(rng: np.random.Generator, b: int, t: int, low: int = 1) -> np.ndarray:
    counts = rng.integers(low, t + 1, b)
    counts[0] = low  # always include the extreme counts
    counts[-1] = t
    return np.arange(t)[None, :] < counts[:, None]


def test_uniform_square():
    rng = np.random.default_rng(0)
    check_lsa_batch(rng.uniform(size=(N_PROBLEMS, 16, 16)).astype(np.float32))


def test_integer_costs_with_many_ties():
    rng = np.random.default_rng(1)
    check_lsa_batch(rng.integers(0, 4, (N_PROBLEMS, 12, 15)).astype(np.int32))


@pytest.mark.parametrize("shape", [(6, 17), (17, 6)])
def test_rectangular_both_ways(shape):
    rng = np.random.default_rng(2)
    check_lsa_batch(rng.normal(size=(N_PROBLEMS, *shape)).astype(np.float32))


def test_maximize():
    rng = np.random.default_rng(3)
    check_lsa_batch(rng.uniform(-5, 5, (50, 7, 9)).astype(np.float32), maximize=True)


def test_detr_like_costs_with_padding():
    rng = np.random.default_rng(4)
    costs = detr_like_costs(rng, N_PROBLEMS, 100, 20)
    check_match_batch(costs, padding_mask(rng, N_PROBLEMS, 20))


def test_padding_from_zero_to_all_targets():
    rng = np.random.default_rng(5)
    costs = rng.uniform(size=(N_PROBLEMS, 30, 12)).astype(np.float32)
    check_match_batch(costs, padding_mask(rng, N_PROBLEMS, 12, low=0))


def test_more_targets_than_queries():
    rng = np.random.default_rng(6)
    costs = rng.uniform(size=(N_PROBLEMS, 8, 12)).astype(np.float32)
    check_match_batch(costs, padding_mask(rng, N_PROBLEMS, 12, low=0))


def test_hand_example():
    # The optimum 1 + 2 + 2 = 5 pairs row 0 with column 1, row 1 with 0, row 2 with 2.
    cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.5, 2.0, 2.0]])
    rows, cols = matching.linear_sum_assignment(cost)
    np.testing.assert_array_equal(rows, [0, 1, 2])
    np.testing.assert_array_equal(cols, [1, 0, 2])
    q_of_t, t_of_q = matching.hungarian_match(cost[None], jnp.array([[True, True, False]]))
    # As queries x targets with target 2 padded, the unique optimum 2 + 1 = 3 pairs target 0
    # with query 1 and target 1 with query 0; query 1 alone would take target 1 (cost 0).
    np.testing.assert_array_equal(q_of_t, [[1, 0, -1]])
    np.testing.assert_array_equal(t_of_q, [[1, 0, -1]])
