"""Exactness of jaxvision.matching against scipy.optimize.linear_sum_assignment.

Each kind of problem is checked on 1000 random instances solved in one jitted call; the
total cost of the returned assignment is computed in float64 from the original costs and
compared with scipy's (float64) optimum. On the CPU both solvers are checked: the native
C++ one (``method="auto"``, where a compiler is found) and the XLA one (``method="xla"``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from jaxvision import matching
from tests.matching.problems import assert_same_total, detr_like_costs, padding_mask

N_PROBLEMS = 1000


METHODS = ("auto", "xla")


def check_lsa_batch(cost: np.ndarray, maximize: bool = False) -> None:
    for method in METHODS:
        _check_lsa_batch(cost, maximize, method)


def check_match_batch(costs: np.ndarray, mask: np.ndarray) -> None:
    for method in METHODS:
        _check_match_batch(costs, mask, method)


def _check_lsa_batch(cost: np.ndarray, maximize: bool, method: str) -> None:
    rows, cols = jax.device_get(
        matching.linear_sum_assignment(cost, maximize=maximize, method=method)
    )
    _, n, m = cost.shape
    assert rows.shape == cols.shape == (len(cost), min(n, m))
    assert rows.dtype == cols.dtype == np.int32
    for c, r, k in zip(cost.astype(np.float64), rows, cols, strict=True):
        assert np.all(np.diff(r) > 0) and len(set(k.tolist())) == len(k)
        ref_r, ref_c = scipy_lsa(c, maximize=maximize)
        assert_same_total(c[r, k].sum(), c[ref_r, ref_c].sum(), np.abs(c).mean())


def _check_match_batch(costs: np.ndarray, mask: np.ndarray, method: str) -> None:
    """Validity and optimality of hungarian_match's output, image by image."""
    q_of_t, t_of_q = jax.device_get(matching.hungarian_match(costs, mask, method=method))
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


def test_uniform_square():
    rng = np.random.default_rng(0)
    check_lsa_batch(rng.uniform(size=(N_PROBLEMS, 16, 16)).astype(np.float32))


def test_integer_costs_with_many_ties():
    # Integer values (stored as float32 to share the compiled solver with the test above;
    # integer dtypes are tested in test_input_dtypes).
    rng = np.random.default_rng(1)
    check_lsa_batch(rng.integers(0, 4, (N_PROBLEMS, 16, 16)).astype(np.float32))


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


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_costs_are_large_finite_costs(method):
    rng = np.random.default_rng(7)
    b, q, t = N_PROBLEMS, 30, 12  # the shape of test_padding_from_zero_to_all_targets
    costs = rng.uniform(size=(b, q, t)).astype(np.float32)
    bad = rng.uniform(size=costs.shape) < 0.3
    costs[bad] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), bad.sum())
    costs[0] = np.nan  # an image with no finite cost at all
    mask = padding_mask(rng, b, t, low=0)
    q_of_t, t_of_q = jax.device_get(matching.hungarian_match(costs, mask, method=method))
    for c, real, qt, tq, nonfinite in zip(costs, mask, q_of_t, t_of_q, bad, strict=True):
        targets = np.flatnonzero(qt >= 0)
        assert len(targets) == real.sum() and np.array_equal(tq[qt[targets]], targets)
        # scipy with non-finite entries at 1e9: fewest non-finite pairs first, then the
        # cheapest finite part; the matcher must agree on both.
        sub = np.where(np.isfinite(c), c, 1e9).astype(np.float64)[:, real]
        ref_q, ref_t = scipy_lsa(sub)
        ref_bad = (sub[ref_q, ref_t] == 1e9).sum()
        used = c[qt[targets], targets].astype(np.float64)
        assert (~np.isfinite(used)).sum() == ref_bad
        ref_finite = sub[ref_q, ref_t][sub[ref_q, ref_t] != 1e9].sum()
        assert_same_total(used[np.isfinite(used)].sum(), ref_finite, 1.0)
        assert np.all(nonfinite[qt[targets], targets] == ~np.isfinite(used))


def test_degenerate_shapes():
    q_of_t, t_of_q = matching.hungarian_match(jnp.zeros((2, 0, 3)), jnp.ones((2, 3), bool))
    np.testing.assert_array_equal(q_of_t, -np.ones((2, 3)))
    assert t_of_q.shape == (2, 0)
    q_of_t, t_of_q = matching.hungarian_match(jnp.zeros((2, 4, 0)), jnp.ones((2, 0), bool))
    assert q_of_t.shape == (2, 0)
    np.testing.assert_array_equal(t_of_q, -np.ones((2, 4)))
    rows, cols = matching.linear_sum_assignment(jnp.zeros((0, 5)))
    assert rows.shape == cols.shape == (0,)
    rows, cols = matching.linear_sum_assignment(jnp.zeros((0, 3, 5)))  # empty batch
    assert rows.shape == cols.shape == (0, 3)
    q_of_t, t_of_q = matching.hungarian_match(jnp.zeros((0, 4, 3)), jnp.ones((0, 3), bool))
    assert q_of_t.shape == (0, 3) and t_of_q.shape == (0, 4)


def test_leading_batch_dimensions():
    rng = np.random.default_rng(8)
    cost = rng.uniform(size=(2, 3, 5, 4)).astype(np.float32)
    rows, cols = matching.linear_sum_assignment(cost)
    assert rows.shape == cols.shape == (2, 3, 4)
    for idx in np.ndindex(2, 3):
        ref = scipy_lsa(cost[idx])  # the optimum of random floats is unique
        np.testing.assert_array_equal(rows[idx], ref[0])
        np.testing.assert_array_equal(cols[idx], ref[1])


def test_vmap_over_decoder_layers_and_grad():
    # DETR matches every decoder layer's output; the loss uses the matched indices.
    rng = np.random.default_rng(9)
    costs = rng.uniform(size=(3, 2, 10, 4)).astype(np.float32)
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    q_of_t, _ = jax.device_get(jax.vmap(matching.hungarian_match, in_axes=(0, None))(costs, mask))
    for layer, img in np.ndindex(3, 2):
        sub = costs[layer, img][:, mask[img]]
        ref_q, ref_t = scipy_lsa(sub)  # the optimum of random floats is unique
        np.testing.assert_array_equal(q_of_t[layer, img, mask[img]][ref_t], ref_q)
        assert np.all(q_of_t[layer, img, ~mask[img]] == -1)

    def matched_cost(c: jax.Array) -> jax.Array:
        q_of_t, _ = matching.hungarian_match(c, mask)
        picked = jnp.take_along_axis(c, jnp.maximum(q_of_t, 0)[:, None, :], axis=1)[:, 0]
        return jnp.sum(jnp.where(mask, picked, 0.0))

    # The gradient is 1 at each matched (query, real target) pair, 0 elsewhere.
    grad = jax.jit(jax.grad(matched_cost))(jnp.asarray(costs[0]))
    expected = np.zeros(costs[0].shape, np.float32)
    for img, t in zip(*np.nonzero(mask), strict=True):
        expected[img, q_of_t[0, img, t], t] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_input_dtypes():
    # bfloat16 is computed in float32 from the rounded values; int8 exactly.
    rng = np.random.default_rng(10)
    cost = rng.uniform(size=(6, 6)).astype(np.float32)
    bf16 = jnp.asarray(cost, jnp.bfloat16)
    rows, cols = matching.linear_sum_assignment(bf16)
    c64 = np.asarray(bf16.astype(jnp.float32), np.float64)
    assert_same_total(c64[rows, cols].sum(), c64[scipy_lsa(c64)].sum(), 1.0)
    ints = np.rint(cost * 10).astype(np.int8)
    rows, cols = matching.linear_sum_assignment(ints)
    assert rows.dtype == cols.dtype == np.int32
    assert ints[rows, cols].sum() == ints[scipy_lsa(ints)].sum()


@pytest.mark.parametrize(
    ("costs", "mask", "error", "match"),
    [
        (jnp.zeros((3, 4)), jnp.ones((3, 4), bool), ValueError, "costs must have shape"),
        (jnp.zeros((2, 3, 4)), jnp.ones((2, 3), bool), ValueError, "target_mask must have"),
        (jnp.zeros((2, 3, 4)), jnp.ones((2, 4)), TypeError, "target_mask must be bool"),
        (jnp.zeros((2, 3, 4), jnp.complex64), jnp.ones((2, 4), bool), TypeError, "real"),
    ],
)
def test_bad_input_is_refused(costs, mask, error, match):
    with pytest.raises(error, match=match):
        matching.hungarian_match(costs, mask)
    with pytest.raises(error, match=match):
        matching.greedy_match(costs, mask)


def test_linear_sum_assignment_refuses_vectors():
    with pytest.raises(ValueError, match="cost must have shape"):
        matching.linear_sum_assignment(jnp.zeros(4))


def test_float64_input_is_solved_in_float64_when_x64_is_enabled():
    # Costs that differ only below float32 resolution: 1 + u * 1e-9.
    rng = np.random.default_rng(11)
    cost = 1.0 + rng.uniform(size=(100, 8, 8)) * 1e-9
    with jax.enable_x64(True):
        rows, cols = jax.device_get(matching.linear_sum_assignment(jnp.asarray(cost)))
    for c, r, k in zip(cost, rows, cols, strict=True):
        assert abs(c[r, k].sum() - c[scipy_lsa(c)].sum()) <= 1e-12  # float32 rounds all to 1


def _sharded_problem():
    rng = np.random.default_rng(7)
    # 20 images per device: more than one round of the CPU solver inside shard_map too.
    costs = rng.random((160, 12, 5)).astype(np.float32)
    mask = rng.random((160, 5)) < 0.7
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
    return costs, mask, mesh, jax.device_put(costs, sharding), jax.device_put(mask, sharding)


def test_inside_shard_map_with_varying_costs():
    costs, mask, mesh, costs_s, mask_s = _sharded_problem()
    expected = matching.hungarian_match(costs, mask)
    sharded = jax.jit(
        jax.shard_map(
            matching.hungarian_match,
            mesh=mesh,
            in_specs=(jax.P("data"), jax.P("data")),
            out_specs=(jax.P("data"), jax.P("data")),
        )
    )
    for got, want in zip(sharded(costs_s, mask_s), expected, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_under_jit_with_explicitly_sharded_batch():
    costs, mask, mesh, costs_s, mask_s = _sharded_problem()
    expected = matching.hungarian_match(costs, mask)
    with jax.set_mesh(mesh):
        got = jax.jit(matching.hungarian_match)(costs_s, mask_s)
    for g, want in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(want))


@pytest.mark.parametrize("slots", [1, 10**6])
def test_rounds_and_flat_loop_agree(monkeypatch, slots):
    # CPU solves the unsolved problems in rounds of `slots`; other devices (or a batch of at
    # most `slots`) run one flat loop. 10**6 forces the flat loop here; the default (16) runs
    # in the 1000-image tests above.
    from jaxvision._src.matching import augmenting_path

    monkeypatch.setattr(augmenting_path, "_CPU_SLOTS", slots)
    rng = np.random.default_rng(12)
    costs = detr_like_costs(rng, 100, 30, 12)
    mask = padding_mask(rng, 100, 12, low=0)
    solve = jax.jit(lambda c, m: matching.hungarian_match.__wrapped__(c, m, method="xla"))
    q_of_t, t_of_q = jax.device_get(solve(costs, mask))
    assert np.array_equal(
        t_of_q[np.nonzero(q_of_t >= 0)[0], q_of_t[q_of_t >= 0]], np.nonzero(q_of_t >= 0)[1]
    )
    for c, real, qt in zip(costs.astype(np.float64), mask, q_of_t, strict=True):
        sub = c[:, real]
        ref = sub[scipy_lsa(sub)].sum()
        assert_same_total(c[qt[real], np.flatnonzero(real)].sum(), ref, 1.0)


def test_vmap_over_layers_of_a_batch_solved_in_rounds():
    # 40 images > 16: the CPU solver's rounds run under vmap (batched trip counts).
    rng = np.random.default_rng(13)
    costs = np.stack([detr_like_costs(rng, 40, 50, 12) for _ in range(3)])
    mask = padding_mask(rng, 40, 12, low=0)
    match = functools.partial(matching.hungarian_match, method="xla")
    q_of_t, _ = jax.device_get(jax.jit(jax.vmap(match, (0, None)))(costs, mask))
    for layer in range(3):
        for c, real, qt in zip(costs[layer].astype(np.float64), mask, q_of_t[layer], strict=True):
            sub = c[:, real]
            ref = sub[scipy_lsa(sub)].sum() if sub.size else 0.0
            assert_same_total(c[qt[real], np.flatnonzero(real)].sum(), ref, 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_fewer_non_finite_entries_is_cheaper_at_costs_of_1e36(method):
    # Before: at |cost| ~ 1e36 (inside the documented 1e37) the stand-in for non-finite
    # entries was capped at finfo.max / 8 = 4.25e37, below the (2K - 1) * 1e36 needed here,
    # so the matcher took the NaN. Costs are now scaled by a power of two first.
    k = 40
    c = np.full((k, k), np.nan, np.float32)
    c[np.arange(k), np.arange(k)] = -1e36  # a cheap diagonal ...
    c[0, 0] = np.nan  # ... whose first entry is NaN
    c[np.arange(k), (np.arange(k) + 1) % k] = 1e36  # the only finite perfect matching
    costs = np.stack([c, c.T, np.where(np.isnan(c), np.inf, c)])
    rng = np.random.default_rng(11)
    noise = (rng.uniform(-1, 1, (5, k, k)) * 1e36).astype(np.float32)
    noise[rng.uniform(size=noise.shape) < 0.3] = np.nan
    costs = np.concatenate([costs, noise])
    ones = np.ones((len(costs), k), bool)
    q_of_t, _ = jax.device_get(matching.hungarian_match(costs, ones, method=method))
    for cost, qt in zip(costs.astype(np.float64), q_of_t, strict=True):
        used = cost[qt, np.arange(k)]
        # scipy in float64 with non-finite entries at 1e300: fewest of them first.
        sub = np.where(np.isfinite(cost), cost, 1e300)
        ref = sub[scipy_lsa(sub)]
        assert (~np.isfinite(used)).sum() == (ref == 1e300).sum()
        assert_same_total(used[np.isfinite(used)].sum(), ref[ref != 1e300].sum(), 1e36)
    assert sorted(q_of_t[0].tolist()) == list(range(k))


def test_method_is_a_static_keyword_and_bad_values_name_it():
    costs = np.random.default_rng(3).uniform(size=(2, 6, 4)).astype(np.float32)
    mask = np.array([[True, True, True, False], [True, False, True, True]])
    auto = matching.hungarian_match(costs, mask)
    xla = matching.hungarian_match(costs, mask, method="xla")
    np.testing.assert_array_equal(np.asarray(auto[0]), np.asarray(xla[0]))
    rows, cols = matching.linear_sum_assignment(costs[0], maximize=True, method="xla")
    want = scipy_lsa(costs[0], maximize=True)
    assert costs[0][rows, cols].sum() == pytest.approx(costs[0][want].sum())
    with pytest.raises(ValueError, match="method must be one of"):
        matching.hungarian_match(costs, mask, method="kernel")
    with pytest.raises(TypeError):
        matching.linear_sum_assignment(costs[0], True)  # maximize is keyword-only


def test_row_reduction_start_is_exact(monkeypatch):
    # Dense problems (many rows) get rounds of augmenting row reduction after the greedy
    # start on the CPU; forced here on small ones, in one batch (one compile): random, tied,
    # with forbidden (+inf) entries, and with only some rows to assign (rectangular). The
    # 300 problems are then solved in rounds of 16; a batch of at most 16 in one flat loop
    # that reads the reduction's contiguous rows (checked on 16 of them, a second compile).
    from jaxvision._src.matching import augmenting_path

    monkeypatch.setattr(augmenting_path, "_DENSE_ROWS", 1)
    monkeypatch.setattr(augmenting_path, "_REDUCTION_ROUNDS", 5)
    monkeypatch.setattr(augmenting_path, "_BIDDERS", 4)
    rng = np.random.default_rng(14)
    n = 12
    forbidden = rng.uniform(size=(100, n, n)) < 0.3
    forbidden[:, np.arange(n), rng.permutation(n)] = False  # a feasible assignment stays
    cost = np.concatenate(
        [
            rng.uniform(size=(100, n, n)),
            rng.integers(0, 3, (100, n, n)),
            np.where(forbidden, np.inf, rng.normal(size=(100, n, n))),
        ]
    ).astype(np.float32)  # [B, columns, rows]: the solver's layout
    active = rng.uniform(size=(300, n)) < np.where(np.arange(300) % 2, 1.0, 0.6)[:, None]
    solve = jax.jit(lambda c, a: augmenting_path._solve_on_cpu(c, a, None))
    col4row, row4col = jax.device_get(solve(cost, active))
    picked = np.r_[0:5, 100:105, 200:206]  # 16 of them, of each kind
    flat = jax.device_get(solve(cost[picked], active[picked]))
    col4row = np.concatenate([col4row, flat[0]])
    row4col = np.concatenate([row4col, flat[1]])
    cost, active = np.concatenate([cost, cost[picked]]), np.concatenate([active, active[picked]])
    for c, real, cols, rows in zip(cost.astype(np.float64), active, col4row, row4col, strict=True):
        sub = c[:, real].T  # rows x columns
        assert np.all(cols[~real] == -1) and np.all(rows[cols[real]] == np.flatnonzero(real))
        assert len(set(cols[real].tolist())) == real.sum()
        total = sub[np.arange(len(sub)), cols[real]].sum()
        assert_same_total(total, sub[scipy_lsa(sub)].sum(), 1.0)
