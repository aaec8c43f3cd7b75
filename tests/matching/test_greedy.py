"""greedy_match against a NumPy transcription of the greedy rule, and against the optimum."""

import jax
import numpy as np

from jaxvision import matching


def numpy_greedy(costs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Cheapest remaining (query, real target) pair first, lowest flat index on ties."""
    q, t = costs.shape
    c = np.where(mask[None, :], costs.astype(np.float64), np.inf)
    query_of_target = -np.ones(t, np.int64)
    for _ in range(min(q, t)):
        k = int(np.argmin(c))
        if not np.isfinite(c.flat[k]):
            break
        qi, ti = divmod(k, t)
        query_of_target[ti] = qi
        c[qi, :] = np.inf
        c[:, ti] = np.inf
    return query_of_target


def test_greedy_follows_the_greedy_rule_and_is_not_better_than_exact():
    rng = np.random.default_rng(0)
    b, q, t = 1000, 30, 12  # the shape of a test of the exact matcher: one compile less
    costs = rng.uniform(size=(b, q, t)).astype(np.float32)
    mask = np.arange(t)[None] < rng.integers(0, t + 1, b)[:, None]
    q_of_t, t_of_q = jax.device_get(matching.greedy_match(costs, mask))
    exact_q_of_t, _ = jax.device_get(matching.hungarian_match(costs, mask))
    worse = 0
    for c, real, qt, tq, exact in zip(costs, mask, q_of_t, t_of_q, exact_q_of_t, strict=True):
        np.testing.assert_array_equal(qt, numpy_greedy(c, real))
        targets = np.flatnonzero(qt >= 0)
        np.testing.assert_array_equal(tq[qt[targets]], targets)
        assert (tq >= 0).sum() == real.sum()
        greedy_total = c.astype(np.float64)[qt[targets], targets].sum()
        exact_total = c.astype(np.float64)[exact[targets], targets].sum()
        assert greedy_total >= exact_total - 1e-6
        worse += greedy_total > exact_total + 1e-6
    assert worse > 0, "the greedy should be suboptimal on some of these problems"
