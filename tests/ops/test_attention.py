"""Masked multi-head attention against a float64 NumPy transcription and PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import ops


def _reference(q, k, v, num_heads, mask):
    """float64 softmax(q k^T / sqrt(d)) v per head, masked keys excluded (Vaswani 2017)."""
    b, lq, d = q.shape
    dh = d // num_heads
    out = np.zeros((b, lq, v.shape[2]))
    dv = v.shape[2] // num_heads
    for i in range(b):
        keep = mask[i] if mask is not None else np.ones(k.shape[1], bool)
        for h in range(num_heads):
            qh = q[i, :, h * dh : (h + 1) * dh].astype(np.float64)
            kh = k[i, keep, h * dh : (h + 1) * dh].astype(np.float64)
            vh = v[i, keep, h * dv : (h + 1) * dv].astype(np.float64)
            s = qh @ kh.T / np.sqrt(dh)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            out[i, :, h * dv : (h + 1) * dv] = p @ vh
    return out


def _case(seed, b=4, lq=5, lk=11, d=24):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((b, n, d)).astype(np.float32) for n in (lq, lk, lk))
    mask = rng.random((b, lk)) < 0.7
    mask[:, 0] = True
    return q, k, v, mask


def test_matches_float64_reference_with_and_without_mask():
    q, k, v, mask = _case(0)
    f = jax.jit(ops.multi_head_attention, static_argnames="num_heads")
    got = f(q, k, v, num_heads=3, key_padding_mask=mask)
    np.testing.assert_allclose(np.asarray(got), _reference(q, k, v, 3, mask), rtol=1e-5, atol=1e-5)
    got = f(q, k, v, num_heads=3)
    np.testing.assert_allclose(np.asarray(got), _reference(q, k, v, 3, None), rtol=1e-5, atol=1e-5)


def test_all_masked_keys_give_finite_output_and_gradients():
    q, k, v, mask = _case(1, b=2)
    mask[1] = False

    def loss(q, k, v):
        return jnp.sum(ops.multi_head_attention(q, k, v, num_heads=2, key_padding_mask=mask))

    out = ops.multi_head_attention(q, k, v, num_heads=2, key_padding_mask=mask)
    np.testing.assert_allclose(
        np.asarray(out[1]), np.broadcast_to(v[1].mean(0), out[1].shape), rtol=1e-5, atol=1e-5
    )
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_dropout_is_unbiased_and_needs_a_key():
    q, k, v, _ = _case(2, b=1, lq=2, lk=4, d=4)
    with pytest.raises(ValueError, match="dropout_rng"):
        ops.multi_head_attention(q, k, v, num_heads=1, dropout_rate=0.5)
    keys = jax.random.split(jax.random.key(0), 4000)
    f = jax.jit(
        jax.vmap(
            lambda key: ops.multi_head_attention(
                q, k, v, num_heads=1, dropout_rate=0.5, dropout_rng=key
            )
        )
    )
    mean = np.asarray(f(keys)).mean(0)
    np.testing.assert_allclose(mean, _reference(q, k, v, 1, None), atol=0.1)


def test_bad_shapes_are_refused():
    q, k, v, mask = _case(3)
    with pytest.raises(ValueError, match="batch sizes"):
        ops.multi_head_attention(q[:2], k, v, num_heads=3)
    with pytest.raises(ValueError, match="num_heads"):
        ops.multi_head_attention(q, k, v, num_heads=5)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ops.multi_head_attention(q, k, v, num_heads=3, key_padding_mask=mask[:, :3])
    with pytest.raises(ValueError, match=r"\[B, L, D\]"):
        ops.multi_head_attention(q[0], k, v, num_heads=3)


@pytest.mark.torch
def test_matches_torch_multihead_attention():
    torch = pytest.importorskip("torch")
    q, k, v, mask = _case(4)
    d = q.shape[2]
    mha = torch.nn.MultiheadAttention(d, 3, batch_first=True, bias=False)
    torch.nn.init.eye_(mha.out_proj.weight)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.eye(d).repeat(3, 1))
        want, _ = mha(
            torch.from_numpy(q),
            torch.from_numpy(k),
            torch.from_numpy(v),
            key_padding_mask=torch.from_numpy(~mask),  # torch: True = ignore
        )
    got = ops.multi_head_attention(q, k, v, num_heads=3, key_padding_mask=mask)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-5, atol=1e-5)
