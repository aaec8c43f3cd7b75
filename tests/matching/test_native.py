"""The native CPU assignment solver (C++ FFI kernel): what only it does, and its fallback.

Its optimality on every kind of problem is checked with the XLA solver's in
test_hungarian.py (both methods run there).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from jaxvision import matching
from jaxvision._src.matching import augmenting_path
from jaxvision._src.native import loader

TARGET = loader.cpu_target("assignment")
needs_kernel = pytest.mark.skipif(TARGET is None, reason="no C++ compiler: XLA path only")


@needs_kernel
def test_forbidden_pairs_and_a_row_with_no_allowed_column():
    # [B, columns, rows]: row 2 of problem 0 may use no column, so it stays unassigned and
    # the others get their optimum among the allowed pairs; problem 1 has a unique feasible
    # assignment through the forbidden entries.
    rng = np.random.default_rng(0)
    cost = rng.uniform(size=(2, 5, 3)).astype(np.float32)
    cost[0, :, 2] = np.inf
    cost[0, 1, 0] = np.nan  # NaN forbids a pair too
    cost[1] = np.inf
    cost[1, [4, 0, 2], [0, 1, 2]] = [3.0, 1.0, 2.0]
    active = np.ones((2, 3), bool)
    col4row, row4col = jax.device_get(
        jax.jit(lambda c, a: augmenting_path._solve_native(c, a, None, TARGET))(cost, active)
    )
    assert col4row[0, 2] == -1 and (row4col[0] == 2).sum() == 0
    sub = np.where(np.isfinite(cost[0, :, :2]), cost[0, :, :2], 1e9).T.astype(np.float64)
    ref = scipy_lsa(sub)
    np.testing.assert_allclose(sub[[0, 1], col4row[0, :2]].sum(), sub[ref].sum(), rtol=1e-12)
    np.testing.assert_array_equal(col4row[1], [4, 0, 2])
    np.testing.assert_array_equal(row4col[1], [1, -1, 2, -1, 0])


def test_auto_lowers_to_the_kernel_on_the_cpu_and_xla_or_disabled_does_not(monkeypatch):
    costs = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 6, 4)), jnp.float32)
    mask = jnp.ones((3, 4), bool)

    def lowered(method: str) -> str:
        f = jax.jit(lambda c, m: matching.hungarian_match.__wrapped__(c, m, method=method))
        return f.lower(costs, mask).as_text()

    assert ("jaxvision_assignment" in lowered("auto")) == (TARGET is not None)
    assert "jaxvision_assignment" not in lowered("xla")
    loader.cpu_target.cache_clear()
    monkeypatch.setenv("JAXVISION_NATIVE", "0")
    try:
        assert "jaxvision_assignment" not in lowered("auto")
    finally:
        monkeypatch.undo()
        loader.cpu_target.cache_clear()
