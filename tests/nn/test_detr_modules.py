"""The NNX modules compute exactly what their functional twins compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision import nn, ops


def test_multi_head_attention_module_is_projections_around_the_function():
    rngs = nnx.Rngs(0)
    module = nn.MaskedMultiHeadAttention(8, 2, rngs=rngs)
    x = jax.random.normal(jax.random.key(1), (2, 3, 8))
    mem = jax.random.normal(jax.random.key(2), (2, 5, 8))
    mask = jnp.array([[True] * 5, [True, True, False, False, False]])
    got = module(x, mem, mem, key_padding_mask=mask)
    want = module.out_proj(
        ops.multi_head_attention(
            module.q_proj(x),
            module.k_proj(mem),
            module.v_proj(mem),
            num_heads=2,
            key_padding_mask=mask,
        )
    )
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="num_heads"):
        nn.MaskedMultiHeadAttention(8, 3, rngs=rngs)


def test_attention_dropout_uses_the_module_stream_only_in_training():
    module = nn.MaskedMultiHeadAttention(4, 1, dropout_rate=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 3, 4))
    eval_a, eval_b = module(x, x, x), module(x, x, x)
    np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
    module.train()
    train_a, train_b = module(x, x, x), module(x, x, x)
    assert not np.allclose(np.asarray(train_a), np.asarray(train_b))
    module.eval()
    np.testing.assert_array_equal(np.asarray(module(x, x, x)), np.asarray(eval_a))
    override = module(x, x, x, deterministic=False)  # a per-call override, as nnx.Dropout
    assert not np.allclose(np.asarray(override), np.asarray(eval_a))


def test_frozen_batch_norm_module_holds_frozen_stats_only():
    module = nn.FrozenBatchNorm(3)
    module.var[...] = jnp.array([0.5, 1.0, 2.0])
    module.mean[...] = jnp.array([0.1, -0.2, 0.3])
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    want = ops.frozen_batch_norm(
        x, module.scale[...], module.bias[...], module.mean[...], module.var[...]
    )
    np.testing.assert_allclose(np.asarray(module(x)), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert not jax.tree.leaves(nnx.state(module, nnx.Param))
    assert len(jax.tree.leaves(nnx.state(module, nn.FrozenStat))) == 4


def test_position_encoding_modules_match_the_functions():
    mask = jnp.ones((2, 3, 4), bool).at[1, :, 2:].set(False)
    sine = nn.SinePositionEncoding(8)
    np.testing.assert_allclose(
        np.asarray(sine(mask)),
        np.asarray(ops.sine_position_encoding(mask, 8)),
        rtol=1e-5,
        atol=1e-6,
    )
    learned = nn.LearnedPositionEncoding(8, max_size=5, rngs=nnx.Rngs(0))
    want = ops.learned_position_encoding(mask, learned.row_embed[...], learned.col_embed[...])
    np.testing.assert_allclose(np.asarray(learned(mask)), np.asarray(want), rtol=1e-6)
