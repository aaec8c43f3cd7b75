"""train.init_module: one compiled construction equals the eager one."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxvision import models, train


def _leaves(module: nnx.Module) -> list[np.ndarray]:
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [host(x) for x in jax.tree.leaves(nnx.state(module))]


def test_equals_eager_construction_of_a_small_detr():
    def factory():
        return models.detr_tiny(
            3, num_queries=4, d_model=16, num_heads=2, ffn_dim=32, num_encoder_layers=1,
            num_decoder_layers=1, backbone={"widths": (8, 8, 16), "stem_width": 8},
            rngs=nnx.Rngs(3),
        )  # fmt: skip

    eager, built = factory(), train.init_module(factory)
    assert nnx.graphdef(eager) == nnx.graphdef(built)
    a, b = _leaves(eager), _leaves(built)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(x, y) for x, y in zip(a, a[1:], strict=False))


def test_bad_factories_are_named():
    with pytest.raises(TypeError, match="factory must be callable"):
        train.init_module(3)
    with pytest.raises(TypeError, match="factory must return an nnx.Module"):
        train.init_module(lambda: jax.numpy.zeros(3))
