"""Margin softmax against ANCHORS section 5, float64 NumPy, finite differences and insightface."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision._src.losses import margin
from jaxvision._src.ops import cosine

PRESETS = dict(margin.MARGIN_PRESETS)


def _np_target(cos, m1, m2, m3, fallback="classic", easy_margin=False):
    """The paper formulas in float64 NumPy, written from arccos."""
    theta = np.arccos(np.clip(cos, -1, 1))
    phi = m1 * theta + m2
    value = np.cos(phi)
    if fallback == "classic":
        value = np.where(phi > np.pi, cos - m2 * np.sin(m2), value)
    elif fallback == "monotonic":
        k = np.floor(phi / np.pi)
        value = (-1.0) ** k * np.cos(phi) - 2 * k
    value = value - m3
    return np.where(cos > 0, value, cos) if easy_margin else value


def _np_loss(cos, labels, scale, m1, m2, m3, **kw):
    logits = scale * cos.copy()
    rows = np.arange(len(labels))
    logits[rows, labels] = scale * _np_target(cos[rows, labels], m1, m2, m3, **kw)
    top = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
    return logits, lse - logits[rows, labels]


def test_anchor_values():
    # ANCHORS 5: ArcFace cos = 0.5, m = 0.5, s = 64 -> 1.510181.
    got = margin.margin_logits(jnp.array([[0.5, 0.1]]), jnp.array([0]))
    np.testing.assert_allclose(got[0, 0], 1.510181, rtol=1e-6)
    np.testing.assert_allclose(got[0, 1], 6.4, rtol=1e-6)
    # cos = -0.9: cos(theta + m) = -0.998801, the classic fallback -1.139713.
    far = jnp.array([[-0.9, 0.0]])
    raw = margin.margin_logits(far, jnp.array([0]), scale=1.0, fallback="none")
    classic = margin.margin_logits(far, jnp.array([0]), scale=1.0)
    np.testing.assert_allclose(raw[0, 0], -0.998801, atol=1e-6)
    np.testing.assert_allclose(classic[0, 0], -1.139713, atol=1e-6)
    # CosFace s (cos - m3): 64 (0.5 - 0.35); combined (1, 0.3, 0.2); SphereFace m1 = 1.35.
    half = jnp.array([[0.5, 0.0]])
    np.testing.assert_allclose(
        margin.margin_logits(half, jnp.array([0]), **PRESETS["cosface"])[0, 0], 9.6, rtol=1e-6
    )
    comb = 1.391375  # 64 (cos(pi / 3 + 0.3) - 0.2)
    np.testing.assert_allclose(
        margin.margin_logits(half, jnp.array([0]), **PRESETS["combined"])[0, 0], comb, rtol=1e-5
    )
    sphere = 10.011806  # 64 cos(1.35 pi / 3)
    np.testing.assert_allclose(
        margin.margin_logits(half, jnp.array([0]), **PRESETS["sphereface"])[0, 0], sphere,
        rtol=1e-5,
    )
    # SphereFace past m1 theta = pi: psi = -cos(phi) - 2 (cos = -0.9: phi = 3.632264).
    psi = -1.117983
    np.testing.assert_allclose(
        margin.margin_logits(far, jnp.array([0]), **{**PRESETS["sphereface"], "scale": 1.0})[
            0, 0
        ],
        psi, rtol=1e-5,
    )


def test_cross_entropy_equals_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, (6, 9)).astype(np.float32)
    labels = rng.integers(0, 9, 6)
    logits = margin.margin_logits(cos, labels)
    want = torch.nn.functional.cross_entropy(torch.tensor(np.asarray(logits)), torch.tensor(labels))
    got = margin.margin_softmax_loss(cos, labels)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    per = margin.margin_softmax_loss(cos, labels, reduction="none")
    np.testing.assert_allclose(float(margin.margin_softmax_loss(cos, labels, reduction="sum")),
                               float(jnp.sum(per)), rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "easy_margin"), [(n, False) for n in sorted(PRESETS)] + [("arcface", True)]
)
def test_random_values_equal_float64_formula(name, easy_margin):
    rng = np.random.default_rng(1)
    cos = rng.uniform(-1, 1, (64, 7))
    labels = rng.integers(0, 7, 64)
    opts = {**PRESETS[name], "easy_margin": easy_margin}
    want_logits, want_loss = _np_loss(cos, labels, **opts)
    both = jax.jit(lambda c, y: (
        margin.margin_logits(c, y, **opts),
        margin.margin_softmax_loss(c, y, reduction="none", **opts),
    ))
    got, loss = both(cos.astype(np.float32), labels)
    np.testing.assert_allclose(np.asarray(got), want_logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(loss), want_loss, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_gradient_through_margin_equals_finite_differences(name):
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        cos = jnp.asarray(rng.uniform(-0.95, 0.95, (5, 6)))
        labels = jnp.asarray(rng.integers(0, 6, 5))
        opts = {**PRESETS[name], "scale": 4.0}  # a small scale keeps the softmax informative
        loss = functools.partial(margin.margin_softmax_loss, labels=labels, **opts)
        grad = np.asarray(jax.jit(jax.grad(loss))(cos))
        eps = 1e-6
        # Central differences along every entry, one vmapped call: steps[k] moves entry k.
        steps = eps * jnp.eye(cos.size, dtype=cos.dtype).reshape(-1, *cos.shape)
        fd = jax.jit(jax.vmap(lambda d: (loss(cos + d) - loss(cos - d)) / (2 * eps)))(steps)
        np.testing.assert_allclose(grad, np.asarray(fd).reshape(cos.shape), rtol=1e-6, atol=1e-9)


def test_detach_margin_is_insightfaces_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    cos = rng.uniform(-0.9, 0.9, (8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)
    # insightface's CombinedMarginLoss ArcFace branch: arccos / + m2 / cos under no_grad.
    t = torch.tensor(cos, requires_grad=True)
    logits = t * 1.0
    rows = torch.arange(8)
    lab = torch.tensor(labels)
    with torch.no_grad():
        target = logits[rows, lab].arccos_()
        logits.arccos_()
        logits[rows, lab] = target + 0.5
        logits.cos_()
    want_loss = torch.nn.functional.cross_entropy(logits * 64.0, lab)
    want_loss.backward()

    def loss(c, detach):
        return margin.margin_softmax_loss(c, labels, fallback="none", detach_margin=detach)

    both = jax.jit(lambda c: (jax.value_and_grad(loss)(c, True), jax.grad(loss)(c, False)))
    (value, detached), true = both(cos)  # one compile
    np.testing.assert_allclose(float(value), want_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(detached), t.grad.numpy(), rtol=1e-4, atol=1e-6)
    # The true gradient differs: it is not that of the loss without margin.
    assert not np.allclose(np.asarray(true), t.grad.numpy(), atol=1e-3)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("detach", [False, True])
def test_finite_at_cos_plus_minus_one_and_zero_embeddings(name, detach):
    cos = jnp.array([[1.0, -1.0, 0.3], [-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]])
    labels = jnp.array([0, 0, 2])
    opts = {**PRESETS[name], "detach_margin": detach}
    value, grad = jax.jit(
        jax.value_and_grad(lambda c: margin.margin_softmax_loss(c, labels, **opts))
    )(cos)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    # Zero embeddings (and a zero centre): cosine 0, finite loss and gradients.
    emb, centres = jnp.zeros((2, 4)), jnp.eye(3, 4).at[2].set(0.0)

    def from_embeddings(e, w):
        return margin.margin_softmax_loss(cosine.pairwise_cosine(e, w), jnp.array([1, 2]), **opts)

    value, grads = jax.jit(jax.value_and_grad(from_embeddings, argnums=(0, 1)))(emb, centres)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_jit_vmap_batch_dims_and_dtypes():
    rng = np.random.default_rng(4)
    cos = rng.uniform(-1, 1, (3, 4, 6)).astype(np.float32)
    labels = rng.integers(0, 6, (3, 4))
    direct = margin.margin_logits(cos, labels)
    jitted = jax.jit(functools.partial(margin.margin_logits, **PRESETS["combined"]))(cos, labels)
    mapped = jax.vmap(margin.margin_logits)(jnp.asarray(cos), jnp.asarray(labels))
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(direct), rtol=1e-6)
    assert jitted.shape == (3, 4, 6)
    half = margin.margin_logits(jnp.asarray(cos, jnp.bfloat16), labels)
    assert half.dtype == jnp.float32
    traced = jax.jit(margin.margin_softmax_loss, static_argnames="reduction")
    assert np.isnan(float(traced(cos[0], jnp.array([0, 1, 6, 2]), reduction="sum")))


def test_bad_input_is_named():
    cos = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"`labels` must lie in \[0, 3\)"):
        margin.margin_logits(cos, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"`labels` must lie in"):
        margin.margin_softmax_loss(cos, np.array([-1, 0]))
    with pytest.raises(ValueError, match="`labels` must have shape"):
        margin.margin_logits(cos, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="`labels` must be integers"):
        margin.margin_logits(cos, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="`fallback`"):
        margin.margin_logits(cos, np.array([0, 1]), fallback="clip")
    with pytest.raises(ValueError, match="`scale`"):
        margin.margin_logits(cos, np.array([0, 1]), scale=0.0)
    with pytest.raises(ValueError, match="same width D"):
        cosine.pairwise_cosine(np.zeros((2, 4)), np.zeros((3, 5)))
