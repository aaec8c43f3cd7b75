"""Adaptive pools and SPP against ANCHORS section 10, PyTorch and float64 finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import ops

POOLS = {"max": ops.adaptive_max_pool2d, "avg": ops.adaptive_avg_pool2d}


# --- bins -------------------------------------------------------------------------------


def test_bins_equal_the_float64_floor_ceil_formula():
    for c in range(1, 60):
        for b in range(1, 40):
            want = tuple((math.floor(a * c / b), math.ceil((a + 1) * c / b)) for a in range(b))
            assert ops.pool_bins(c, b) == want, (c, b)


def test_bins_of_anchors_section_10():
    assert ops.pool_bins(13, 6) == ((0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13))
    assert ops.pool_bins(4, 6) == ((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4))


@pytest.mark.parametrize(
    "c, n, count", [(13, 6, 6), (10, 6, 9), (11, 4, 5), (14, 4, 4), (13, 4, 4)]
)
def test_sppnet_bin_counts_of_the_paper_formula(c, n, count):
    bins = ops.pool_bins(c, n, binning="sppnet")
    win, stride = math.ceil(c / n), math.floor(c / n)
    assert len(bins) == count
    assert all(e - s == win for s, e in bins)
    assert [s for s, _ in bins] == [i * stride for i in range(count)]
    assert bins[-1][1] <= c


# --- hand values ------------------------------------------------------------------------


def test_hand_values_5x5_to_3x3():
    x = jnp.arange(25.0).reshape(1, 5, 5, 1)
    np.testing.assert_array_equal(
        np.asarray(ops.adaptive_max_pool2d(x, 3)).ravel(), [6, 8, 9, 16, 18, 19, 21, 23, 24]
    )
    np.testing.assert_allclose(
        np.asarray(ops.adaptive_avg_pool2d(x, 3)).ravel(),
        [3, 4.5, 6, 10.5, 12, 13.5, 18, 19.5, 21],
        rtol=1e-6,
    )


def test_hand_values_1d_13_to_6_avg_and_upsampling_4_to_6():
    x = jnp.arange(13.0).reshape(1, 1, 13, 1)
    got = ops.adaptive_avg_pool2d(x, (1, 6))
    np.testing.assert_allclose(np.asarray(got).ravel(), [1, 3, 5, 7, 9, 11], rtol=1e-6)
    # Size 4 -> 6: bins (0,1),(0,2),(1,2),(2,3),(2,4),(3,4), so cells repeat.
    x = jnp.asarray([1.0, 10.0, 100.0, 1000.0]).reshape(1, 1, 4, 1)
    np.testing.assert_allclose(
        np.asarray(ops.adaptive_avg_pool2d(x, (1, 6))).ravel(),
        [1, 5.5, 10, 100, 550, 1000],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        np.asarray(ops.adaptive_max_pool2d(x, (1, 6))).ravel(), [1, 10, 10, 100, 1000, 1000]
    )


# --- PyTorch parity ---------------------------------------------------------------------


def _random_cases(seed, count):
    rng = np.random.default_rng(seed)
    cases = [(13, 13, 6, 6), (10, 10, 6, 6), (4, 7, 6, 9), (8, 8, 4, 2), (1, 1, 3, 2), (7, 5, 7, 5)]
    cases.append((40, 7, 18, 20))  # more than 16 bins: the gather path, and upsampling
    for _ in range(count):
        h, w = rng.integers(1, 24, 2)
        oh, ow = rng.integers(1, 12, 2)
        cases.append((int(h), int(w), int(oh), int(ow)))
    return cases


def _nchw(x):
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@jax.jit(static_argnums=(0, 1))
def _value_and_vjp(mode, size, x, g):
    out, vjp = jax.vjp(lambda x: POOLS[mode](x, size), x)
    return out, vjp(g)[0]


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_values_and_gradients_equal_pytorch_on_random_shapes(mode):
    torch = pytest.importorskip("torch")
    torch_pool = getattr(torch.nn.functional, f"adaptive_{mode}_pool2d")
    rng = np.random.default_rng(1)
    for h, w, oh, ow in _random_cases(2, 4):
        x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
        g = rng.standard_normal((2, oh, ow, 3)).astype(np.float32)
        xt = _nchw(x).requires_grad_(True)
        out_t = torch_pool(xt, (oh, ow))
        (out_t * _nchw(g)).sum().backward()
        got, grad = _value_and_vjp(mode, (oh, ow), x, g)
        want = out_t.detach().numpy().transpose(0, 2, 3, 1)
        want_grad = xt.grad.numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(
            np.asarray(got), want, rtol=1e-6, atol=1e-6, err_msg=str((h, w, oh, ow))
        )
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6, atol=1e-6)


@jax.jit(static_argnums=(1, 2))
def _spp(x, levels, mode):
    return ops.spatial_pyramid_pool(x, levels, mode=mode)


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_spp_equals_a_concatenation_of_pytorch_adaptive_pools(mode):
    torch = pytest.importorskip("torch")
    torch_pool = getattr(torch.nn.functional, f"adaptive_{mode}_pool2d")
    rng = np.random.default_rng(3)
    for shape, levels in [
        ((2, 13, 13, 4), (1, 2, 4)),
        ((1, 10, 7, 3), (6, 3, 2, 1)),
        ((2, 3, 5, 2), (4, 1)),
    ]:
        x = rng.standard_normal(shape).astype(np.float32)
        got = _spp(x, levels, mode)
        want = torch.cat(
            [torch_pool(_nchw(x), n).permute(0, 2, 3, 1).flatten(1) for n in levels], dim=1
        )
        assert got.shape == (shape[0], sum(n * n for n in levels) * shape[3])
        np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.torch
def test_sppnet_binning_equals_max_pool_with_the_paper_window_and_stride():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 10, 13, 3)).astype(np.float32)
    levels = (6, 3, 1)
    got = ops.spatial_pyramid_pool(x, levels, binning="sppnet")
    parts = []
    for n in levels:
        kernel = (math.ceil(10 / n), math.ceil(13 / n))
        stride = (10 // n, 13 // n)
        pooled = torch.nn.functional.max_pool2d(_nchw(x), kernel, stride)
        parts.append(pooled.permute(0, 2, 3, 1).flatten(1))
    want = torch.cat(parts, dim=1)
    assert got.shape == want.shape == (2, (9 * 6 + 3 * 3 + 1) * 3)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6)


# --- gradients, ties, transformations ---------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_gradients_match_float64_finite_differences(mode):
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        # Distinct values, so that max has no tie within the finite-difference step.
        x = rng.permutation(5 * 7 * 2).reshape(1, 5, 7, 2).astype(np.float64) / 10
        g = rng.standard_normal((1, (9 + 1 + 16) * 2))

        @jax.jit
        def f(x):
            return jnp.sum(ops.spatial_pyramid_pool(x, (3, 1, 4), mode=mode) * g)

        grad = np.asarray(jax.grad(f)(jnp.asarray(x)))
        eps = 1e-6
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            step = np.zeros_like(x)
            step[i] = eps
            fd[i] = (float(f(x + step)) - float(f(x - step))) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.torch
def test_max_ties_send_the_gradient_to_the_first_cell_as_pytorch():
    torch = pytest.importorskip("torch")
    # Constant input: every cell of every bin ties. 5 -> 3 has overlapping bins.
    x = np.ones((1, 5, 5, 1), np.float32)
    grad = jax.grad(lambda x: jnp.sum(ops.adaptive_max_pool2d(x, 3)))(jnp.asarray(x))
    xt = _nchw(x).requires_grad_(True)
    torch.nn.functional.adaptive_max_pool2d(xt, 3).sum().backward()
    want = xt.grad.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(grad), want)
    # Bin starts are rows / columns 0, 1, 3: the first cell of each of the 9 bins.
    expected = np.zeros((5, 5))
    expected[np.ix_([0, 1, 3], [0, 1, 3])] = 1
    np.testing.assert_array_equal(np.asarray(grad)[0, ..., 0], expected)


def test_vmap_matches_one_call_per_batch():
    x = jnp.asarray(np.random.default_rng(6).standard_normal((3, 2, 9, 11, 4)), jnp.float32)
    one = jnp.stack([_spp(xi, (1, 2, 4), "max") for xi in x])
    batched = jax.jit(jax.vmap(lambda x: ops.spatial_pyramid_pool(x, (1, 2, 4))))(x)
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(one))
    assert ops.adaptive_avg_pool2d(x[0], (None, 3)).shape == (2, 9, 3, 4)


def test_bfloat16_and_infinite_inputs_stay_in_dtype_and_finite_where_expected():
    x = jnp.full((1, 4, 4, 1), -jnp.inf).at[0, 0, 0, 0].set(2.0)
    got = ops.adaptive_max_pool2d(x.astype(jnp.bfloat16), 2)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(got, np.float32).ravel(), [2, -np.inf, -np.inf, -np.inf]
    )


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: ops.adaptive_max_pool2d(x, 0), "output_size"),
        (lambda x: ops.adaptive_avg_pool2d(x, (3, 0)), "output_size"),
        (lambda x: ops.adaptive_avg_pool2d(x, (1, 2, 3)), "output_size"),
        (lambda x: ops.adaptive_max_pool2d(x[0], 2), "rank 4"),
        (lambda x: ops.spatial_pyramid_pool(x[..., 0], (1, 2)), "rank 4"),
        (lambda x: ops.spatial_pyramid_pool(x, (1, 2), mode="min"), "mode"),
        (lambda x: ops.spatial_pyramid_pool(x, ()), "levels"),
        (lambda x: ops.spatial_pyramid_pool(x, (2, 0)), "levels"),
        (lambda x: ops.spatial_pyramid_pool(x, (1,), binning="ceil"), "binning"),
        (
            lambda x: ops.spatial_pyramid_pool(x, (8,), binning="sppnet"),
            "input_size >= output_size",
        ),
    ],
)
def test_bad_input_is_named_in_the_error(call, match):
    x = jnp.zeros((1, 5, 5, 2))
    with pytest.raises(ValueError, match=match):
        call(x)
