"""Every module of ``jaxvision.nn`` against its functional twin in ``ops`` / ``losses``.

The test walks the export registry's ``nn`` namespace. Each public ``nnx.Module`` needs an
entry in ``TWINS`` below: how to build it with non-trivial parameters and an input, which
public function is its twin, and how that function computes the module's output from the
module's parameters (``nnx.to_pure_dict(nnx.state(module))``, a plain nested dict, the
analogue of ``torch.func.functional_call``) and its static configuration. A public name of
``nn`` that is not a module (a ``Variable`` type) must be listed in ``NOT_MODULES`` with the
reason. Adding a module without an entry fails ``test_every_nn_module_has_a_twin`` with a
message that says what to add.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision import api, ops, parallel
from jaxvision._src import export as _export
from jaxvision._src.nn import (
    attention,
    frozen_batch_norm,
    partial_fc,
    pooling,
    position_encoding,
    realnvp,
)


@dataclasses.dataclass(frozen=True)
class Twin:
    """A module and its functional twin.

    Attributes:
      op: the public twin (an ``ops`` or ``losses`` function).
      build: ``() -> (module, args)``: the module with non-default parameters and the
        positional inputs of one call.
      functional: ``(module, params, *args) -> output``: the module's output computed with
        ``op`` from ``params`` (the pure dict of the module's state) and the module's static
        configuration (its plain attributes), without calling the module.
    """

    op: Callable
    build: Callable[[], tuple[nnx.Module, tuple]]
    functional: Callable


def _rng(seed=0):
    return np.random.default_rng(seed)


def _frozen_batch_norm():
    module = frozen_batch_norm.FrozenBatchNorm(5, epsilon=1e-3)
    rng = _rng()
    for name, value in (
        ("scale", rng.uniform(0.5, 2, 5)),
        ("bias", rng.standard_normal(5)),
        ("mean", rng.standard_normal(5)),
        ("var", rng.uniform(0.1, 2, 5)),
    ):
        getattr(module, name)[...] = jnp.asarray(value, jnp.float32)
    return module, (jnp.asarray(rng.standard_normal((2, 3, 4, 5)), jnp.float32),)


def _mask():
    mask = np.ones((2, 6, 7), bool)
    mask[0, 4:, :] = False
    mask[1, :, 5:] = False
    return jnp.asarray(mask)


def _dense(params, x):
    return x @ params["kernel"] + params["bias"]


def _attention():
    module = attention.MaskedMultiHeadAttention(8, 2, dropout_rate=0.0, rngs=nnx.Rngs(0))
    if hasattr(module, "eval"):
        module.eval()
    rng = _rng(2)
    q, kv = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((2, 3, 8), (2, 5, 8)))
    return module, (q, kv, kv)


def _attention_functional(module, params, query, key, value):
    out = ops.multi_head_attention(
        _dense(params["q_proj"], query),
        _dense(params["k_proj"], key),
        _dense(params["v_proj"], value),
        num_heads=module.num_heads,
    )
    return _dense(params["out_proj"], out)


def _pool_input():
    return (jnp.asarray(_rng(3).standard_normal((2, 11, 7, 3)), jnp.float32),)


def _realnvp():
    module = realnvp.RealNVP(couplings=3, hidden=8, gain=0.5, rngs=nnx.Rngs(4))
    return module, (jnp.asarray(_rng(4).standard_normal((5, 2)), jnp.float32),)


def _realnvp_functional(module, params, x):
    def mlp(tree):
        return ops.MLPParams(*(tree[i] for i in range(len(tree))))

    return ops.realnvp_log_prob(ops.RealNVPParams(mlp(params["scale"]), mlp(params["shift"])), x)


def _partial_fc():
    module = partial_fc.PartialFC(6, 11, axis_name=None, margin={"m2": 0.3}, rngs=nnx.Rngs(5))
    rng = _rng(5)
    embeddings = jnp.asarray(rng.standard_normal((4, 6)), jnp.float32)
    return module, (embeddings, jnp.asarray([0, 3, 10, 3]))


def _partial_fc_functional(module, params, embeddings, labels):
    return parallel.partial_fc_loss(
        embeddings,
        labels,
        params["centres"],
        num_classes=module.num_classes,
        axis_name=module.axis_name,
        gather=module.gather,
        sample_rate=module.sample_rate,
        **module.margin,
    )


TWINS: dict[str, Twin] = {
    "RealNVP": Twin(ops.realnvp_log_prob, _realnvp, _realnvp_functional),
    # The sharded classifier's twin lives in ``parallel``: it reduces over a mesh axis.
    "PartialFC": Twin(parallel.partial_fc_loss, _partial_fc, _partial_fc_functional),
    "FrozenBatchNorm": Twin(
        ops.frozen_batch_norm,
        _frozen_batch_norm,
        lambda m, p, x: ops.frozen_batch_norm(
            x, p["scale"], p["bias"], p["mean"], p["var"], epsilon=m.epsilon
        ),
    ),
    "MaskedMultiHeadAttention": Twin(ops.multi_head_attention, _attention, _attention_functional),
    "SinePositionEncoding": Twin(
        ops.sine_position_encoding,
        lambda: (
            position_encoding.SinePositionEncoding(16, temperature=50.0, normalize=True),
            (_mask(),),
        ),
        lambda m, p, mask: ops.sine_position_encoding(
            mask, m.num_pos_feats, temperature=m.temperature, normalize=m.normalize, scale=m.scale
        ),
    ),
    "LearnedPositionEncoding": Twin(
        ops.learned_position_encoding,
        lambda: (
            position_encoding.LearnedPositionEncoding(4, max_size=9, rngs=nnx.Rngs(0)),
            (_mask(),),
        ),
        lambda m, p, mask: ops.learned_position_encoding(mask, p["row_embed"], p["col_embed"]),
    ),
    "AdaptiveMaxPool2d": Twin(
        ops.adaptive_max_pool2d,
        lambda: (pooling.AdaptiveMaxPool2d((3, 5)), _pool_input()),
        lambda m, p, x: ops.adaptive_max_pool2d(x, m.output_size),
    ),
    "AdaptiveAvgPool2d": Twin(
        ops.adaptive_avg_pool2d,
        lambda: (pooling.AdaptiveAvgPool2d((4, None)), _pool_input()),
        lambda m, p, x: ops.adaptive_avg_pool2d(x, m.output_size),
    ),
    "SpatialPyramidPooling": Twin(
        ops.spatial_pyramid_pool,
        lambda: (pooling.SpatialPyramidPooling((3, 1, 2), mode="avg"), _pool_input()),
        lambda m, p, x: ops.spatial_pyramid_pool(x, m.levels, mode=m.mode, binning=m.binning),
    ),
}

# Public names of ``nn`` that are not layers, with the reason they have no twin.
NOT_MODULES: dict[str, str] = {
    "FrozenStat": (
        "an nnx.Variable subclass, the kind of FrozenBatchNorm's four arrays (so that "
        "nnx.Param filters leave them out); a type, not a layer, so there is nothing to call"
    ),
}


def _public_twins() -> set[int]:
    registry = api.load_registry()
    return {
        id(e.obj)
        for ns in ("ops", "losses", "parallel")
        for e in registry.endpoints(ns)
        if not e.deprecated
    }


def missing_twins(registry: _export.Registry) -> list[str]:
    """What the registry's ``nn`` namespace lacks here, one sentence per problem."""
    problems = []
    for e in registry.endpoints("nn"):
        if e.deprecated:
            continue
        is_module = isinstance(e.obj, type) and issubclass(e.obj, nnx.Module)
        if is_module and e.symbol not in TWINS:
            problems.append(
                f"nn.{e.symbol} ({e.module}) has no functional twin entry: add "
                f"TWINS[{e.symbol!r}] = Twin(op=<its public function in ops or losses>, "
                f"build=<() -> (module, args)>, functional=<(module, params, *args) -> "
                f"output, calling op>) in tests/nn/test_twins.py (see the module docstring)"
            )
        elif not is_module and e.symbol not in NOT_MODULES:
            problems.append(
                f"nn.{e.symbol} is not an nnx.Module: list it in NOT_MODULES in "
                f"tests/nn/test_twins.py with the reason it has no twin, or move it out of nn"
            )
    public = {e.symbol for e in registry.endpoints("nn")}
    for name in sorted((set(TWINS) | set(NOT_MODULES)) - public):
        problems.append(f"TWINS / NOT_MODULES entry {name!r} is no longer in nn: remove it")
    return problems


def test_every_nn_module_has_a_twin():
    problems = missing_twins(api.load_registry())
    assert not problems, "\n".join(problems)


def test_a_module_without_an_entry_is_reported_with_what_to_add():
    registry = _export.Registry()

    @registry.export("nn.UntwinnedLayer")
    class UntwinnedLayer(nnx.Module):
        pass

    for e in api.load_registry().endpoints("nn"):
        registry.add(e)
    (problem,) = missing_twins(registry)
    assert "nn.UntwinnedLayer" in problem and "TWINS['UntwinnedLayer'] = Twin(" in problem


def test_every_twin_is_a_public_function_of_ops_or_losses():
    public = _public_twins()
    for name, twin in TWINS.items():
        assert id(twin.op) in public, (
            f"the twin of nn.{name} is not exported in ops / losses / parallel"
        )


@pytest.mark.parametrize("name", sorted(TWINS))
def test_module_equals_its_twin_for_the_module_parameters(name):
    twin = TWINS[name]
    module, args = twin.build()
    params = nnx.to_pure_dict(nnx.state(module))
    want = twin.functional(module, params, *args)
    got = module(*args)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    # The same through split / merge inside jit: a pure function of the state pytree.
    graphdef, state = nnx.split(module)
    jitted = jax.jit(lambda state, *a: nnx.merge(graphdef, state)(*a))(state, *args)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(want), rtol=1e-5, atol=1e-6)
