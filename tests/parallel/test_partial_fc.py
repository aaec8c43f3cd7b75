"""Partial FC on 8 simulated devices equals the margin softmax on one (loss and gradients)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxvision._src.losses import margin
from jaxvision._src.ops import cosine
from jaxvision._src.parallel import partial_fc, state, step

C, D = 37, 16  # 37 classes on 8 devices: 5 per device, 3 padding rows


def _problem(seed, batch, num_classes=C, shards=8):
    rng = np.random.default_rng(seed)
    k = partial_fc.num_local_classes(num_classes, shards)
    emb = jnp.asarray(rng.normal(size=(batch, D)), jnp.float32)
    centres = jnp.asarray(rng.normal(size=(shards * k, D)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)
    return emb, labels, centres


def _reference(emb, labels, centres, num_classes=C, **opts):
    cos = cosine.pairwise_cosine(emb, centres[:num_classes])
    return margin.margin_softmax_loss(cos, labels, **opts)


def _sharded(mesh, num_classes=C, **opts):
    fn = functools.partial(partial_fc.partial_fc_loss, num_classes=num_classes, **opts)
    mapped = jax.shard_map(
        fn, mesh=mesh, in_specs=(P("model"), P("model"), P("model")), out_specs=P()
    )
    split = jax.sharding.NamedSharding(mesh, P("model"))

    def loss(*args):
        return mapped(*(jax.reshard(a, split) for a in args))

    return loss


@pytest.mark.parametrize("preset", ["arcface", "combined"])
def test_sharded_equals_unsharded_loss_and_gradients(preset):
    mesh = jax.make_mesh((8,), ("model",), axis_types=(jax.sharding.AxisType.Explicit,))
    emb, labels, centres = _problem(0, 16)
    opts = dict(margin.MARGIN_PRESETS[preset])
    sharded = jax.jit(jax.value_and_grad(_sharded(mesh, **opts), argnums=(0, 2)))
    reference = jax.jit(jax.value_and_grad(functools.partial(_reference, **opts), argnums=(0, 2)))
    (loss, (g_emb, g_w)), (want, (w_emb, w_w)) = (
        sharded(emb, labels, centres), reference(emb, labels, centres)
    )
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(g_emb), np.asarray(w_emb), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(g_w), np.asarray(w_w), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(g_w)[C:], 0.0)  # padding classes
    single = partial_fc.partial_fc_loss(emb, labels, centres, num_classes=C, axis_name=None,
                                        **opts)
    np.testing.assert_allclose(float(single), float(want), rtol=1e-5)


def test_sampling_keeps_positives_and_is_the_softmax_over_kept_classes():
    mesh = jax.make_mesh((8,), ("model",), axis_types=(jax.sharding.AxisType.Explicit,))
    num_classes = 203  # 26 per device, 5 padding rows
    emb, labels, centres = _problem(1, 8, num_classes)
    fn = _sharded(mesh, num_classes, sample_rate=0.5, rng=jax.random.key(3))
    loss, g_w = jax.jit(jax.value_and_grad(fn, argnums=2))(emb, labels, centres)
    kept = np.flatnonzero(np.abs(np.asarray(g_w)).sum(-1) > 0)
    assert set(np.asarray(labels).tolist()) <= set(kept.tolist())
    per_shard = np.bincount(kept // 26, minlength=8)
    np.testing.assert_array_equal(per_shard, 13)  # ceil(26 * 0.5) on every device
    assert kept.max() < num_classes
    remap = {c: i for i, c in enumerate(kept)}
    sub = jnp.asarray([remap[int(y)] for y in labels])
    want = margin.margin_softmax_loss(cosine.pairwise_cosine(emb, centres[kept]), sub)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)


def test_in_data_parallel_step_on_data_model_mesh():
    """One SGD step on a (2 data, 4 model) mesh equals the same step on one device."""
    explicit = (jax.sharding.AxisType.Explicit,) * 2
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=explicit)
    rng = np.random.default_rng(2)
    k = partial_fc.num_local_classes(C, 4)
    params = {
        "backbone": jnp.asarray(rng.normal(size=(6, D)), jnp.float32),
        "centres": jnp.asarray(rng.normal(size=(4 * k, D)), jnp.float32),
    }
    batch = {"x": jnp.asarray(rng.normal(size=(8, 6)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, C, 8), jnp.int32)}
    opt = optax.sgd(0.5, momentum=0.9)

    def loss_fn(p, model_state, b, key, axis_name):
        loss = partial_fc.partial_fc_loss(
            b["x"] @ p["backbone"], b["y"], p["centres"], num_classes=C, gather=False
        )
        return loss, (model_state, {})

    specs = {"backbone": P(), "centres": P("model", None)}
    train = step.data_parallel_step(loss_fn, opt, mesh, param_specs=specs, donate=False)
    s0 = state.TrainState.create(params, opt)
    s1, metrics = train(s0, batch, jax.random.key(0))

    def ref_loss(p):
        return _reference(batch["x"] @ p["backbone"], batch["y"], p["centres"])

    want_loss, grads = jax.value_and_grad(ref_loss)(params)
    updates, _ = opt.update(grads, opt.init(params), params)
    want = optax.apply_updates(params, updates)
    np.testing.assert_allclose(float(metrics["loss"]), float(want_loss), rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(np.asarray(s1.params[name]), np.asarray(want[name]),
                                   rtol=1e-5, atol=1e-5)
    assert s1.params["centres"].sharding.spec == P("model", None)
    gnorm = optax.tree.norm(grads)
    np.testing.assert_allclose(float(metrics["grad_norm"]), float(gnorm), rtol=1e-5)


def test_errors_name_the_problem():
    emb, labels, centres = _problem(0, 4)
    with pytest.raises(ValueError, match="axis_name 'model' is not bound"):
        partial_fc.partial_fc_loss(emb, labels, centres, num_classes=C)
    with pytest.raises(ValueError, match="same width D"):
        partial_fc.partial_fc_loss(emb, labels, centres[:, :8], num_classes=C, axis_name=None)
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 37\)"):
        partial_fc.partial_fc_loss(emb, labels.at[0].set(37), centres, num_classes=C,
                                   axis_name=None)
    with pytest.raises(ValueError, match="`rng` is required"):
        partial_fc.partial_fc_loss(emb, labels, centres, num_classes=C, axis_name=None,
                                   sample_rate=0.5)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    with pytest.raises(ValueError, match="'model' is not an axis of the mesh"):
        step.data_parallel_step(lambda *a: None, optax.sgd(0.1), mesh,
                                param_specs={"centres": P("model", None)})


def test_module_is_a_thin_wrapper_over_its_twin():
    from flax import nnx

    from jaxvision._src.nn.partial_fc import PartialFC

    emb, labels, _ = _problem(4, 16)
    head = PartialFC(D, C, num_shards=8, margin=margin.MARGIN_PRESETS["cosface"],
                     rngs=nnx.Rngs(0))
    assert head.centres.shape == (40, D) and head.partition_spec == P("model", None)
    mesh = jax.make_mesh((8,), ("model",), axis_types=(jax.sharding.AxisType.Explicit,))
    graph, params = nnx.split(head)

    def module_loss(p, e, y):
        return nnx.merge(graph, p)(e, y)

    split = jax.sharding.NamedSharding(mesh, P("model"))
    mapped = jax.shard_map(module_loss, mesh=mesh, in_specs=(P("model"), P("model"), P("model")),
                           out_specs=P())
    got = jax.jit(lambda p, e, y: mapped(*(jax.tree.map(lambda a: jax.reshard(a, split), t)
                                           for t in (p, e, y))))(params, emb, labels)
    want = _reference(emb, labels, head.centres[...], **margin.MARGIN_PRESETS["cosface"])
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    with pytest.raises(ValueError, match="`num_shards` must be 1"):
        PartialFC(D, C, num_shards=8, axis_name=None, rngs=nnx.Rngs(0))
