"""train.init_module: one compiled construction equals the eager one."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxvision import train


def _leaves(module: nnx.Module) -> list[np.ndarray]:
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return [host(x) for x in jax.tree.leaves(nnx.state(module))]


class _Small(nnx.Module):
    """Several initialisers (normal, truncated normal, zeros, ones) and an RNG stream."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.norm = nnx.LayerNorm(4, rngs=rngs)
        self.head = nnx.Linear(4, 2, kernel_init=nnx.initializers.truncated_normal(0.1), rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)


def test_equals_eager_construction():
    def factory():
        return _Small(nnx.Rngs(3))

    eager, built = factory(), train.init_module(factory)
    assert nnx.graphdef(eager) == nnx.graphdef(built)
    a, b = _leaves(eager), _leaves(built)
    assert len(a) == len(b) > 5
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(x, y) for x, y in zip(a, a[1:], strict=False))


def test_bad_factories_are_named():
    with pytest.raises(TypeError, match="factory must be callable"):
        train.init_module(3)
    with pytest.raises(TypeError, match="factory must return an nnx.Module"):
        train.init_module(lambda: jax.numpy.zeros(3))
