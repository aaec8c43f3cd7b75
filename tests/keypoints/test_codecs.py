"""Heatmap, soft-argmax and SimCC codecs against ANCHORS section 9 and NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.keypoints.argmax import heatmap_argmax
from jaxvision._src.keypoints.heatmaps import gaussian_heatmaps
from jaxvision._src.keypoints.simcc import simcc_decode, simcc_encode
from jaxvision._src.keypoints.soft_argmax import soft_argmax

# Our coordinates are continuous (pixel i covers [i, i + 1)): index space + 0.5.
HALF = 0.5


def _np_gaussian(kp, vis, h, w, sigma, unbiased):
    mu = kp if unbiased else np.floor(kp) + 0.5
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    d2 = (xs[..., None] - mu[:, 0]) ** 2 + (ys[..., None] - mu[:, 1]) ** 2
    return np.exp(-d2 / (2 * sigma**2)) * (vis > 0)


@pytest.mark.parametrize("unbiased", [False, True])
def test_gaussian_heatmaps_match_numpy(unbiased):
    rng = np.random.default_rng(0)
    kp = rng.uniform(-2, 18, (5, 2))
    vis = np.array([2, 1, 0, 2, 2])
    got = gaussian_heatmaps(kp, vis, (12, 16), sigma=1.5, unbiased=unbiased)
    want = _np_gaussian(kp, vis, 12, 16, 1.5, unbiased)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert got.shape == (12, 16, 5)


def test_gaussian_heatmaps_batched_and_vmap():
    kp = np.random.default_rng(1).uniform(0, 8, (3, 4, 2))
    batched = gaussian_heatmaps(kp, None, (8, 8))
    mapped = jax.vmap(lambda k: gaussian_heatmaps(k, None, (8, 8)))(kp)
    np.testing.assert_allclose(batched, mapped, rtol=1e-6)
    assert batched.shape == (3, 8, 8, 4)


def _np_argmax_quarter(h):
    hh, ww, k = h.shape
    out = np.zeros((k, 2))
    for c in range(k):
        y, x = np.unravel_index(np.argmax(h[..., c]), (hh, ww))
        px, py = float(x), float(y)
        if 0 < x < ww - 1:
            px += 0.25 * np.sign(h[y, x + 1, c] - h[y, x - 1, c])
        if 0 < y < hh - 1:
            py += 0.25 * np.sign(h[y + 1, x, c] - h[y - 1, x, c])
        out[c] = px + HALF, py + HALF
    return out


def test_heatmap_argmax_quarter_matches_numpy():
    rng = np.random.default_rng(2)
    # Random values, then three levels (many ties: NumPy's first maximum in row-major order).
    for h in (rng.uniform(size=(2, 9, 7, 5)), rng.integers(0, 3, (2, 9, 7, 5))):
        h = h.astype(np.float32)
        xy, score = heatmap_argmax(h, refine="quarter")
        for b in range(2):
            np.testing.assert_allclose(xy[b], _np_argmax_quarter(h[b]), rtol=1e-6)
            np.testing.assert_allclose(score[b], h[b].max(axis=(0, 1)), rtol=1e-6)


def test_argmax_errs_up_to_half_a_map_pixel_and_dark_recovers_the_mean():
    kp = np.random.default_rng(3).uniform(4, 28, (50, 2))
    h = gaussian_heatmaps(kp, None, (32, 32), sigma=2.0, unbiased=True)
    plain = np.asarray(heatmap_argmax(h)[0])
    assert np.abs(plain - kp).max() <= 0.5 + 1e-5
    dark = np.asarray(heatmap_argmax(h, refine="dark")[0])
    np.testing.assert_allclose(dark, kp, rtol=0, atol=1e-3)
    blurred = np.asarray(heatmap_argmax(h, refine="dark", blur_sigma=1.0)[0])
    assert np.abs(blurred - kp).max() < 0.1


def test_dark_step_is_zero_on_the_border_and_on_flat_maps():
    h = np.zeros((6, 6, 2), np.float32)
    h[0, 3, 0] = 1.0  # peak on the top border
    xy, _ = heatmap_argmax(h, refine="dark")
    np.testing.assert_allclose(xy, [[3.5, 0.5], [0.5, 0.5]])
    assert np.isfinite(np.asarray(xy)).all()


def test_soft_argmax_anchor_values():
    # Uniform 64-wide map: 31.5 in index space.
    uniform = np.zeros((1, 64, 1))
    np.testing.assert_allclose(soft_argmax(uniform)[0, 0] - HALF, 31.5, rtol=1e-6)
    # Half the mass at x = 10, half at x = 20: 15.0.
    two = np.full((1, 64, 1), -1e4)
    two[0, [10, 20], 0] = 0.0
    np.testing.assert_allclose(soft_argmax(two)[0, 0] - HALF, 15.0, rtol=1e-6)
    # 64x64 zeros, logit 10 at (x=20, y=40), over pixel centres, then debiased.
    h = np.zeros((64, 64, 1))
    h[40, 20, 0] = 10.0
    np.testing.assert_allclose(soft_argmax(h)[0], [22.3033, 39.1671], rtol=2e-6)
    np.testing.assert_allclose(soft_argmax(h, debias=True)[0], [20.5, 40.5], rtol=1e-5)


def _np_soft_argmax(h, beta):
    hh, ww, k = h.shape
    z = beta * h.reshape(hh * ww, k).astype(np.float64)
    p = np.exp(z - z.max(0))
    p /= p.sum(0)
    ys, xs = np.mgrid[0:hh, 0:ww] + 0.5
    return np.stack([xs.reshape(-1) @ p, ys.reshape(-1) @ p], axis=-1)


@pytest.mark.parametrize("beta", [1.0, 7.0])
def test_soft_argmax_matches_float64_numpy(beta):
    h = np.random.default_rng(4).normal(size=(10, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(soft_argmax(h, beta=beta), _np_soft_argmax(h, beta), rtol=1e-5)


def test_local_soft_argmax_ignores_a_distant_peak():
    h = np.zeros((32, 32, 1), np.float32)
    h[5, 5, 0], h[5, 6, 0] = 5.0, 5.0
    h[25, 25, 0] = 4.9  # a second mode far away
    local = np.asarray(soft_argmax(h, beta=10.0, radius=2))
    np.testing.assert_allclose(local[0], [6.0, 5.5], rtol=1e-4)
    # Within its window the local variant equals a global one on the window alone.
    window = np.full_like(h, -1e9)
    window[3:8, 3:8] = h[3:8, 3:8]
    np.testing.assert_allclose(local, soft_argmax(window, beta=10.0), rtol=1e-5)
    # Debias over the window recovers the centre between the two peak pixels.
    np.testing.assert_allclose(
        soft_argmax(h, beta=10.0, radius=2, debias=True)[0], [6.0, 5.5], rtol=1e-4
    )


def test_soft_argmax_finite_values_and_grads():
    const = jnp.zeros((8, 8, 2))
    peaky = jnp.zeros((8, 8, 2)).at[3, 4].set(100.0)
    maps = jnp.stack([const, peaky])
    variants = [(beta, debias) for beta in (1.0, 1e4) for debias in (False, True)]

    @jax.jit
    def values_and_grads(h):  # every variant in one compilation
        def f(h, b, d):
            return soft_argmax(h, beta=b, debias=d)

        out = []
        for b, d in variants:
            out.append((f(h, b, d), jax.grad(lambda x, b=b, d=d: jnp.sum(f(x, b, d)))(h)))
        return out

    for v, g in values_and_grads(maps):
        assert np.isfinite(np.asarray(v)).all() and np.isfinite(np.asarray(g)).all()
    np.testing.assert_allclose(soft_argmax(const, debias=True), 4.0)  # the map's centre
    np.testing.assert_allclose(soft_argmax(peaky, beta=1e4)[0], [4.5, 3.5])


def test_soft_argmax_under_jit_and_vmap():
    h = np.random.default_rng(5).normal(size=(4, 6, 6, 2)).astype(np.float32)
    f = jax.jit(lambda x: soft_argmax(x, beta=2.0, debias=True))
    np.testing.assert_allclose(f(h), jax.vmap(f)(h), rtol=1e-5)


def test_simcc_anchor_values():
    # One compilation for encode + decode (op-by-op dispatch compiles every op).
    @jax.jit
    def encode_decode(kp):
        lx, ly = simcc_encode(kp, None, (256, 192), split_ratio=2.0)
        return lx, ly, simcc_decode(lx, ly, split_ratio=2.0)[0]

    lx, ly, dec = encode_decode(np.array([[10.3, 100.3]]))
    assert int(np.argmax(lx[0])) == 21
    np.testing.assert_allclose(dec[0, 0], 10.5)
    # Away from the grid's edge the normalised Gaussian has peak 1 / (6 sqrt(2 pi)).
    np.testing.assert_allclose(ly.max(), 0.066490, rtol=1e-4)
    np.testing.assert_allclose(lx.max(), 0.066490, rtol=5e-4)  # cut 3.5 sigma from bin 0
    np.testing.assert_allclose([lx.sum(), ly.sum()], 1.0, rtol=1e-5)


@pytest.mark.parametrize("k", [1.0, 2.0, 3.0])
def test_simcc_round_trip_error_is_at_most_half_a_bin(k):
    kp = np.random.default_rng(6).uniform(1, 40, (30, 2))
    lx, ly = simcc_encode(kp, None, (48, 48), split_ratio=k, label="onehot", smoothing=0.1)
    np.testing.assert_allclose(lx.sum(-1), 1.0, rtol=1e-5)
    dec, score = simcc_decode(lx, ly, split_ratio=k)
    assert np.abs(np.asarray(dec) - kp).max() <= 0.5 / k + 1e-5
    np.testing.assert_allclose(score, 0.9 + 0.1 / (48 * k), rtol=1e-5)


def test_simcc_invisible_keypoints_get_zero_labels():
    lx, ly = simcc_encode(np.ones((2, 2)), np.array([1, 0]), (8, 8))
    assert float(lx[1].sum()) == 0.0 and float(ly[1].sum()) == 0.0


def test_simcc_decode_matches_numpy_with_nan():
    # mmpose's get_simcc_maximum: np.argmax and np.amax, so a NaN bin wins with score NaN.
    # jnp.max alone drops the NaN at this size on XLA's CPU (20 of 20 random cases); the
    # decode reads the maxima at the argmax.
    rng = np.random.default_rng(3)
    lx = rng.uniform(size=(4, 17, 384)).astype(np.float32)
    ly = rng.uniform(size=(4, 17, 512)).astype(np.float32)
    lx[1, 5, 300] = np.nan
    ly[2, 9, 17] = ly[2, 9, 400] = np.nan
    xy, score = (np.asarray(a) for a in jax.jit(simcc_decode)(lx, ly))
    want_xy = np.stack([lx.argmax(-1), ly.argmax(-1)], -1) / 2.0
    want_score = np.minimum(lx.max(-1), ly.max(-1))
    np.testing.assert_array_equal(xy, want_xy)
    np.testing.assert_array_equal(score, want_score)  # NaN where NaN
    assert np.isnan(score[1, 5]) and np.isnan(score[2, 9]) and xy[2, 9, 1] == 17 / 2.0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="heatmaps` must be"):
        soft_argmax(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="heatmaps` must be"):
        heatmap_argmax(np.zeros(5))
    with pytest.raises(ValueError, match="refine"):
        heatmap_argmax(np.zeros((4, 4, 1)), refine="subpixel")
    with pytest.raises(ValueError, match="visibility"):
        gaussian_heatmaps(np.zeros((3, 2)), np.ones(4), (8, 8))
    with pytest.raises(ValueError, match="keypoints"):
        gaussian_heatmaps(np.zeros((3, 3)), None, (8, 8))
    with pytest.raises(ValueError, match="label"):
        simcc_encode(np.zeros((3, 2)), None, (8, 8), label="laplace")
    with pytest.raises(ValueError, match="x_logits"):
        simcc_decode(np.zeros((3, 8)), np.zeros((2, 8)))
