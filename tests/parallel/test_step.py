"""The data-parallel step: independent of the device count, equal to pmap and to plain SGD."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxvision import parallel

STEPS = 4


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(6, 16, rngs=rngs)
        self.bn = nnx.BatchNorm(16, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.tanh(self.l1(x)))


def _nnx_setup():
    graphdef, params, rest = nnx.split(_MLP(nnx.Rngs(0)), nnx.Param, ...)

    def loss_fn(params, model_state, batch, rng, axis_name):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        err = model(batch["x"]) - batch["y"]
        # A globally normalised loss, the way DETR divides by the number of boxes.
        count = lax.psum(jnp.sum(batch["w"]), axis_name) / lax.axis_size(axis_name)
        loss = jnp.sum(batch["w"][:, None] * err**2) / count
        return loss, (
            nnx.state(model, nnx.Not(nnx.Param)),
            {"count": jnp.sum(batch["w"]).astype(jnp.int32)},
        )

    return params, rest, loss_fn


def _batches(n=STEPS, b=16):
    rng = np.random.default_rng(0)
    return [
        {
            "x": rng.normal(size=(b, 6)).astype(np.float32),
            "y": rng.normal(size=(b, 3)).astype(np.float32),
            "w": rng.integers(0, 3, size=(b,)).astype(np.float32),
        }
        for _ in range(n)
    ]


def _run(num_devices):
    params, rest, loss_fn = _nnx_setup()
    opt = optax.adam(1e-2)
    mesh = parallel.make_mesh(num_devices)
    state = parallel.replicate_on_mesh(
        parallel.TrainState.create(params, opt, model_state=rest), mesh
    )
    step = parallel.data_parallel_step(loss_fn, opt, mesh)
    losses = []
    for batch in _batches():
        state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(0))
        losses.append(float(metrics["loss"]))
    return state, losses, metrics


def _reference():
    """float64 NumPy transcription of the weighted loss and Adam on the whole batch."""
    params, _, _ = _nnx_setup()
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), nnx.to_pure_dict(params))

    def loss_and_grad(p, batch):
        x, y, w = (batch[k].astype(np.float64) for k in ("x", "y", "w"))
        h = x @ p["l1"]["kernel"] + p["l1"]["bias"]
        a = np.tanh(h)
        out = a @ p["l2"]["kernel"] + p["l2"]["bias"]
        err = out - y
        loss = np.sum(w[:, None] * err**2) / np.sum(w)
        d_out = 2 * w[:, None] * err / np.sum(w)
        d_a = d_out @ p["l2"]["kernel"].T
        d_h = d_a * (1 - a**2)
        grads = {
            "l1": {"kernel": x.T @ d_h, "bias": d_h.sum(0)},
            "l2": {"kernel": a.T @ d_out, "bias": d_out.sum(0)},
            "bn": {
                "scale": np.zeros_like(p["bn"]["scale"]),
                "bias": np.zeros_like(p["bn"]["bias"]),
            },
        }
        return loss, grads

    m = jax.tree.map(np.zeros_like, p)
    v = jax.tree.map(np.zeros_like, p)
    losses = []
    for t, batch in enumerate(_batches(), start=1):
        loss, g = loss_and_grad(p, batch)
        losses.append(loss)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g**2, v, g)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        p = jax.tree.map(
            lambda p, m, v, c1=c1, c2=c2: p - 1e-2 * (m / c1) / (np.sqrt(v / c2) + 1e-8), p, m, v
        )
    return p, losses


def test_same_result_on_1_2_4_8_devices_and_numpy_reference():
    ref_params, ref_losses = _reference()
    results = {n: _run(n) for n in (1, 2, 4, 8)}
    base_state, base_losses, _ = results[1]
    np.testing.assert_allclose(base_losses, ref_losses, rtol=1e-5)
    flat_ref = jax.tree.leaves(ref_params)
    np.testing.assert_allclose(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(nnx.to_pure_dict(base_state.params))]),
        np.concatenate([np.ravel(x) for x in flat_ref]),
        rtol=1e-4,
        atol=1e-6,
    )
    for n in (2, 4, 8):
        state, losses, metrics = results[n]
        np.testing.assert_allclose(losses, base_losses, rtol=1e-5)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
            state.params,
            base_state.params,
        )
        assert int(state.step) == STEPS
        # Integer-valued metrics are summed over devices: the global count.
        assert float(metrics["count"]) == _batches()[-1]["w"].sum()


def test_pmap_step_equals_shard_map_step():
    params, rest, loss_fn = _nnx_setup()
    opt = optax.sgd(0.1, momentum=0.9)
    n = 4
    devices = jax.local_devices()[:n]
    mesh = parallel.make_mesh(n)
    state = parallel.replicate_on_mesh(
        parallel.TrainState.create(params, opt, model_state=rest), mesh
    )
    pstate = parallel.replicate_for_pmap(
        parallel.TrainState.create(params, opt, model_state=rest), devices
    )
    step = parallel.data_parallel_step(loss_fn, opt, mesh, donate=False)
    pstep = parallel.pmap_step(loss_fn, opt, devices=devices, donate=False)
    for batch in _batches():
        state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(1))
        pstate, pmetrics = pstep(pstate, parallel.split_for_pmap(batch, n), jax.random.key(1))
        np.testing.assert_allclose(pmetrics["loss"][0], metrics["loss"], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-6, atol=1e-7),
        pstate.params,
        state.params,
    )


def test_bad_input_is_rejected_with_named_argument():
    _, _, loss_fn = _nnx_setup()
    opt = optax.sgd(0.1)
    mesh = parallel.make_mesh(8)
    with pytest.raises(TypeError, match="optimizer"):
        parallel.data_parallel_step(loss_fn, "sgd", mesh)
    with pytest.raises(ValueError, match="axis_name"):
        parallel.data_parallel_step(loss_fn, opt, mesh, axis_name="model")
    with pytest.raises(ValueError, match="num_devices"):
        parallel.make_mesh(9)
    with pytest.raises(ValueError, match="divisible"):
        parallel.shard_batch({"x": np.zeros((6, 2))}, mesh)
    step = parallel.data_parallel_step(loss_fn, opt, mesh)
    params, rest, _ = _nnx_setup()
    state = parallel.TrainState.create(params, opt, model_state=rest)
    with pytest.raises(ValueError, match=r"\['x'\]"):
        step(state, {"x": jnp.zeros((12, 6)), "y": jnp.zeros((16, 3))}, jax.random.key(0))


def _linear_loss(params, model_state, batch, rng, axis_name):
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2), (model_state, {})


@pytest.mark.parametrize("builder", ["data_parallel_step", "pmap_step"])
def test_a_donated_state_is_refused_and_replicate_copies(builder):
    # Before: replicate aliased the caller's arrays, so the first step deleted them, and a
    # second call with the donated state segfaulted on 2 CPU devices.
    opt = optax.sgd(0.1)
    mesh = parallel.make_mesh(2)
    batch = {k: v for k, v in _batches(1, b=4)[0].items() if k in ("x", "y")}
    if builder == "data_parallel_step":
        mine = jax.device_put(jnp.ones((6, 3)), jax.sharding.NamedSharding(mesh, P()))
        state = parallel.replicate(parallel.TrainState.create({"w": mine}, opt), mesh)
        step = parallel.data_parallel_step(_linear_loss, opt, mesh, donate=True)
        batch = parallel.shard_batch(batch, mesh)
    else:
        devices = jax.local_devices()[:2]
        mine = jnp.ones((6, 3))
        state = parallel.replicate_for_pmap(parallel.TrainState.create({"w": mine}, opt), devices)
        step = parallel.pmap_step(_linear_loss, opt, devices=devices, donate=True)
        batch = parallel.split_for_pmap(batch, 2)
    first, _ = step(state, batch, jax.random.key(0))
    assert not mine.is_deleted()
    np.testing.assert_array_equal(np.asarray(mine), 1.0)
    second, _ = step(first, batch, jax.random.key(0))  # donates `first`
    with pytest.raises(ValueError, match=r"params\['w'\] was deleted.*donated"):
        step(first, batch, jax.random.key(0))
    step(second, batch, jax.random.key(0))  # the returned state works


def test_donation_by_default_on_accelerators_only():
    class Device:  # stands for a jax.Device: only the platform is read
        def __init__(self, platform):
            self.platform = platform

    assert not parallel.donates_by_default([Device("cpu"), Device("cpu")])
    assert parallel.donates_by_default([Device("gpu")])
    assert parallel.donates_by_default([Device("cpu"), Device("tpu")])
    # On these CPU devices the default step keeps its input state alive.
    opt = optax.sgd(0.1)
    mesh = parallel.make_mesh(2)
    state = parallel.replicate(parallel.TrainState.create({"w": jnp.ones((6, 3))}, opt), mesh)
    batch = {k: v for k, v in _batches(1, b=4)[0].items() if k in ("x", "y")}
    step = parallel.data_parallel_step(_linear_loss, opt, mesh)
    first, _ = step(state, parallel.shard_batch(batch, mesh), jax.random.key(0))
    again, _ = step(state, parallel.shard_batch(batch, mesh), jax.random.key(0))
    assert not state.params["w"].is_deleted()
    np.testing.assert_array_equal(np.asarray(again.params["w"]), np.asarray(first.params["w"]))
