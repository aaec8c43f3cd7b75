"""Ring and tree collectives against lax.psum / psum_scatter / all_gather on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision import parallel

SIZES = (3, 1001)  # odd rows per device: fewer than the 8 devices, and not divisible by 8


def _data(n, dtype, rng):
    if dtype == jnp.int32:
        return [rng.integers(-1000, 1000, size=(n, m, 3)).astype(np.int32) for m in SIZES]
    if dtype == jnp.bfloat16:  # small integers: every partial sum is exact in bfloat16
        return [rng.integers(-8, 8, size=(n, m, 3)).astype(np.float32) for m in SIZES]
    return [rng.normal(size=(n, m, 3)).astype(np.float32) for m in SIZES]


def _compare_all(mesh, xs):
    """One compiled program: every collective on every size, next to its lax peer."""
    n = mesh.shape["data"]

    def per_device(*xs):
        out = []
        for x in xs:
            x = x[0]
            pad = -x.shape[0] % n
            padded = jnp.pad(x, [(0, pad), (0, 0)])
            pairs = [
                (parallel.ring_all_reduce(x, "data"), lax.psum(x, "data")),
                (parallel.halving_doubling_all_reduce(x, "data"), lax.psum(x, "data")),
                (
                    parallel.ring_reduce_scatter(x, "data"),
                    lax.psum_scatter(padded, "data", scatter_dimension=0, tiled=True),
                ),
                (parallel.ring_all_gather(x, "data"), lax.all_gather(x, "data", tiled=True)),
            ]
            out.extend(jnp.stack([a, b])[None] for a, b in pairs)
        return tuple(out)

    f = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
    return f(*(jax.device_put(x, NamedSharding(mesh, P("data"))) for x in xs))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32])
def test_equal_to_lax_collectives_on_8_devices(dtype):
    mesh = parallel.make_mesh(8)
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(x, dtype) for x in _data(8, dtype, rng)]
    outs = _compare_all(mesh, xs)
    assert len(outs) == 4 * len(SIZES)
    for k, out in enumerate(outs):
        out = np.asarray(out.astype(jnp.float32))  # [devices, 2, ...]
        ours, peer = out[:, 0], out[:, 1]
        assert ours.dtype == peer.dtype
        if dtype == jnp.float32:  # another summation order
            np.testing.assert_allclose(ours, peer, rtol=1e-5, atol=1e-5, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(ours, peer, err_msg=f"output {k}")
    # Against float64 NumPy: ring and tree all-reduce of the second size are the sums.
    total = np.asarray(xs[1].astype(jnp.float32), np.float64).sum(0)
    for k in (4, 5):
        for d in range(8):
            ours = np.asarray(outs[k].astype(jnp.float32))[d, 0]
            np.testing.assert_allclose(ours, total, rtol=1e-5, atol=1e-5)


def test_tree_all_reduce_on_devices_that_are_not_a_power_of_two():
    for n in (3, 6):
        mesh = parallel.make_mesh(n)
        x = np.random.default_rng(n).integers(-100, 100, size=(n, 5, 3)).astype(np.int32)

        def f(x):
            x = x[0]
            return jnp.stack(
                [
                    parallel.halving_doubling_all_reduce(x, "data"),
                    parallel.ring_all_reduce(x, "data"),
                ]
            )[None]

        out = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=P("data"), out_specs=P("data")))(
            jax.device_put(x, NamedSharding(mesh, P("data")))
        )
        out = np.asarray(out)
        for d in range(n):
            np.testing.assert_array_equal(out[d, 0], x.sum(0))
            np.testing.assert_array_equal(out[d, 1], x.sum(0))


def test_bad_input():
    mesh = parallel.make_mesh(8)

    def f(x):
        return parallel.ring_reduce_scatter(x[0, 0], "data")[None]

    g = jax.shard_map(f, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    with pytest.raises(ValueError, match="leading axis"):
        jax.jit(g)(jax.device_put(jnp.zeros((8, 2)), NamedSharding(mesh, P("data"))))
    with pytest.raises(TypeError, match="dtype"):
        jax.jit(
            jax.shard_map(
                lambda x: parallel.ring_all_reduce(x, "data"),
                mesh=mesh,
                in_specs=P("data"),
                out_specs=P("data"),
            )
        )(jax.device_put(jnp.zeros((8,), bool), NamedSharding(mesh, P("data"))))
