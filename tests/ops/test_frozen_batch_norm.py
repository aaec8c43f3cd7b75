"""Frozen BatchNorm against the formula and HF DETR's DetrFrozenBatchNorm2d."""

import jax
import numpy as np
import pytest

from jaxvision import ops


def _stats(rng, c):
    return (
        rng.uniform(0.5, 1.5, c),
        rng.standard_normal(c),
        rng.standard_normal(c),
        np.concatenate([[0.0], rng.uniform(0.1, 2.0, c - 1)]),  # one zero variance
    )


def test_matches_the_formula_in_float64_and_is_finite_for_zero_variance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    scale, bias, mean, var = _stats(rng, 6)
    got = jax.jit(ops.frozen_batch_norm)(
        x, *(a.astype(np.float32) for a in (scale, bias, mean, var))
    )
    want = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-4)
    assert np.isfinite(np.asarray(got)).all()


def test_wrong_statistics_shape_is_refused():
    x = np.zeros((1, 2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="var"):
        ops.frozen_batch_norm(x, np.ones(3), np.ones(3), np.ones(3), np.ones(4))


@pytest.mark.torch
def test_matches_hf_detr_frozen_batch_norm():
    torch = pytest.importorskip("torch")
    detr = pytest.importorskip("transformers.models.detr.modeling_detr")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    stats = [a.astype(np.float32) for a in _stats(rng, 5)]
    bn = detr.DetrFrozenBatchNorm2d(5)
    for name, value in zip(("weight", "bias", "running_mean", "running_var"), stats, strict=True):
        getattr(bn, name).copy_(torch.from_numpy(value))
    want = bn(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    got = ops.frozen_batch_norm(x, *stats)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
