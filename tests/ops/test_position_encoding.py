"""Position encodings and the padding-mask resize against NumPy and the PyTorch peers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import ops


def _sine_reference(mask, num_pos_feats, temperature, normalize, scale):
    """float64 transcription of DETR's PositionEmbeddingSine (appendix A.4)."""
    m = mask.astype(np.float64)
    y = np.cumsum(m, axis=1)
    x = np.cumsum(m, axis=2)
    if normalize:
        y = y / (y[:, -1:, :] + 1e-6) * scale
        x = x / (x[:, :, -1:] + 1e-6) * scale
    b, h, w = mask.shape
    out = np.zeros((b, h, w, 2 * num_pos_feats))
    for i in range(num_pos_feats):
        t = temperature ** (2 * (i // 2) / num_pos_feats)
        f = np.sin if i % 2 == 0 else np.cos
        out[..., i] = f(y / t)
        out[..., num_pos_feats + i] = f(x / t)
    return out


def _random_masks(rng, b, h, w):
    mask = np.zeros((b, h, w), bool)
    for i in range(b):
        mask[i, : rng.integers(1, h + 1), : rng.integers(1, w + 1)] = True
    return mask


@pytest.mark.parametrize("normalize", [True, False])
def test_sine_matches_float64_reference(normalize):
    rng = np.random.default_rng(0)
    mask = _random_masks(rng, 6, 7, 9)
    scale = 2 * math.pi if normalize else 1.0
    encode = jax.jit(
        ops.sine_position_encoding,
        static_argnums=1,
        static_argnames=("temperature", "normalize", "scale"),
    )
    got = encode(jnp.asarray(mask), 16, temperature=10000.0, normalize=normalize, scale=scale)
    want = _sine_reference(mask, 16, 10000.0, normalize, scale)
    assert got.shape == (6, 7, 9, 32)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=2e-5)


def test_sine_ignores_padding_and_survives_an_all_padding_image():
    mask = np.zeros((2, 5, 6), bool)
    mask[0, :3, :4] = True
    full = np.ones((1, 3, 4), bool)
    got = np.asarray(ops.sine_position_encoding(jnp.asarray(mask), 8))
    alone = np.asarray(ops.sine_position_encoding(jnp.asarray(full), 8))
    # The real part of a padded image is encoded as if the image were alone.
    np.testing.assert_allclose(got[0, :3, :4], alone[0], rtol=1e-5, atol=1e-6)
    assert np.isfinite(got).all()


def test_learned_concatenates_column_then_row():
    rng = np.random.default_rng(1)
    rows, cols = rng.standard_normal((10, 3)), rng.standard_normal((12, 3))
    mask = jnp.ones((2, 4, 5), bool)
    got = np.asarray(ops.learned_position_encoding(mask, jnp.asarray(rows), jnp.asarray(cols)))
    assert got.shape == (2, 4, 5, 6)
    for i in range(4):
        for j in range(5):
            np.testing.assert_allclose(got[1, i, j], np.concatenate([cols[j], rows[i]]), rtol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="pixel_mask"):
        ops.sine_position_encoding(jnp.ones((4, 4), bool))
    with pytest.raises(ValueError, match="num_pos_feats"):
        ops.sine_position_encoding(jnp.ones((1, 4, 4), bool), 7)
    with pytest.raises(ValueError, match="exceeds"):
        ops.learned_position_encoding(jnp.ones((1, 4, 9), bool), jnp.ones((8, 2)), jnp.ones((8, 2)))
    with pytest.raises(ValueError, match="size"):
        ops.downsample_pixel_mask(jnp.ones((1, 4, 4), bool), (0, 2))


@pytest.mark.torch
def test_sine_and_mask_resize_match_hf_detr():
    torch = pytest.importorskip("torch")
    detr = pytest.importorskip("transformers.models.detr.modeling_detr")
    rng = np.random.default_rng(2)
    mask = _random_masks(rng, 5, 50, 67)
    encode = jax.jit(
        lambda m: ops.sine_position_encoding(ops.downsample_pixel_mask(m, m.shape[1:]), 32)
    )
    for size in [(7, 9), (25, 34)]:
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(mask)[None].float(), size=size
        ).to(torch.bool)[0]
        ours = ops.downsample_pixel_mask(jnp.asarray(mask), size)
        np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())
        embed = detr.DetrSinePositionEmbedding(32, normalize=True)
        want = embed((5, 1) + size, "cpu", torch.float32, mask=theirs)
        got = encode(ours)
        want = want.numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
