"""IoU-family losses against float64 NumPy formulas, hand values and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxvision import losses
from tests.boxes import np_reference as ref

NAMES = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss", "eiou_loss", "siou_loss"]
FUNCS = {name: getattr(losses, name) for name in NAMES}


def _options(name, focal_gamma):
    return {"focal_gamma": focal_gamma} if name == "eiou_loss" else {}


@functools.partial(jax.jit, static_argnames=("fmt", "reduction", "eps", "power", "focal_gamma"))
def all_losses(pred, target, fmt="xyxy", reduction="none", eps=1e-7, power=1.0, focal_gamma=0.0):
    """Every loss in one compiled call (compiling is most of the test time)."""
    return {
        n: FUNCS[n](
            pred,
            target,
            fmt=fmt,
            reduction=reduction,
            eps=eps,
            power=power,
            **_options(n, focal_gamma),
        )
        for n in NAMES
    }


def test_hand_checked_values():
    # CIoU of these pairs is 1, -0.4, 0.2370817 and -0.17005 (ANCHORS.md section 1).
    pred = jnp.array([[0, 0, 10, 10], [0, 0, 1, 1], [0, 0, 2, 1], [200, 599, 300, 599]], float)
    target = jnp.array([[0, 0, 10, 10], [2, 0, 3, 1], [0, 0, 1, 2], [200, 500, 300, 600]], float)
    values = all_losses(pred, target, eps=0.0)
    np.testing.assert_allclose(values["ciou_loss"], [0, 1.4, 1 - 0.2370817, 1.17005], atol=2e-6)
    np.testing.assert_allclose(values["giou_loss"], [0, 1 + 1 / 3, 1 - 1 / 12, 1], atol=2e-6)
    np.testing.assert_allclose(values["iou_loss"], [0, 1, 2 / 3, 1], atol=2e-6)
    # EIoU of the second pair: equal sizes, so DIoU loss 1.4; SIoU: centres on a
    # horizontal line (angle cost 0), rho_x = (2/3)^2, equal shapes.
    np.testing.assert_allclose(values["eiou_loss"][1], 1.4, atol=2e-6)
    np.testing.assert_allclose(values["siou_loss"][1], 1 + (1 - np.exp(-2 * 4 / 9)) / 2, atol=2e-6)
    for v in values.values():
        assert v[0] == 0  # identical boxes: zero loss
    grad = jax.grad(lambda p: losses.ciou_loss(p, target, reduction="sum"))(pred)
    assert jnp.all(jnp.isfinite(grad))


@pytest.mark.parametrize(
    "fmt, power, gamma", [("xyxy", 1.0, 0.0), ("xywh", 3.0, 0.5), ("cxcywh", 0.5, 0.0)]
)
def test_random_boxes_match_float64_formulas(fmt, power, gamma):
    rng = np.random.default_rng(0)
    pred, target = ref.random_boxes(rng, (2, 3, 8)), ref.random_boxes(rng, (2, 3, 8))
    target[0, 0, :4] = pred[0, 0, :4] + rng.uniform(-1, 1, (4, 4))  # overlapping pairs
    p32 = jnp.asarray(ref.from_xyxy(pred, fmt), jnp.float32)
    t32 = jnp.asarray(ref.from_xyxy(target, fmt), jnp.float32)
    p64 = ref.to_xyxy(np.asarray(p32, np.float64), fmt)
    t64 = ref.to_xyxy(np.asarray(t32, np.float64), fmt)
    values = all_losses(p32, t32, fmt=fmt, power=power, focal_gamma=gamma)
    for name, got in values.items():
        expected = ref.loss(name, p64, t64, power=power, focal_gamma=gamma)
        assert got.shape == (2, 3, 8) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6, err_msg=name)


def test_reductions_jit_and_vmap():
    rng = np.random.default_rng(1)
    pred = jnp.asarray(ref.random_boxes(rng, (3, 5)), jnp.float32)
    target = jnp.asarray(ref.random_boxes(rng, (3, 5)), jnp.float32)
    none = all_losses(pred, target)
    total = all_losses(pred, target, reduction="sum")
    mean = all_losses(pred, target, reduction="mean")
    mapped = jax.jit(jax.vmap(all_losses))(pred, target)
    for name in NAMES:
        np.testing.assert_allclose(total[name], jnp.sum(none[name]), rtol=1e-6)
        np.testing.assert_allclose(mean[name], jnp.mean(none[name]), rtol=1e-6)
        np.testing.assert_allclose(mapped[name], none[name], rtol=1e-6)
    empty = jnp.zeros((0, 4))
    for name in NAMES:
        assert FUNCS[name](empty, empty, reduction="mean") == 0
        assert FUNCS[name](empty, empty, reduction="sum") == 0
        assert FUNCS[name](empty, empty).shape == (0,)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    pred, target = ref.random_boxes(rng, (6,)), ref.random_boxes(rng, (6,))
    pred[:3] = target[:3] + rng.uniform(-1, 1, (3, 4))  # overlapping pairs
    weights = rng.normal(size=6)

    def weighted(p, t):
        return {n: jnp.sum(weights * v) for n, v in all_losses(p, t, focal_gamma=0.5).items()}

    grads = jax.jit(jax.jacrev(weighted))(jnp.asarray(pred, jnp.float32), jnp.asarray(target))
    for name in NAMES:
        gamma = 0.5 if name == "eiou_loss" else 0.0
        frozen = ref.frozen(name, pred, target, focal_gamma=gamma)

        def f(p, n=name, frozen=frozen, gamma=gamma):
            return weights * ref.loss(n, p, target, focal_gamma=gamma, **frozen)

        np.testing.assert_allclose(
            grads[name], ref.numerical_grad(f, pred.copy()), rtol=1e-3, atol=2e-5, err_msg=name
        )


@functools.partial(jax.jit, static_argnames=("eps", "power"))
def _values_and_grads(pred, target, eps, power):
    def total(p, t):
        values = all_losses(p, t, eps=eps, power=power, focal_gamma=0.5)
        return sum(jnp.sum(v) for v in values.values())

    return [
        *all_losses(pred, target, eps=eps, power=power).values(),
        *jax.grad(total, (0, 1))(pred, target),
    ]


DEGENERATE = np.array(
    [[0, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2], [3, 3, 1, 1], [0, 0, 2, 2], [200, 599, 300, 599]],
    np.float32,
)


def test_degenerate_pairs_are_finite():
    pairs = jnp.asarray([(a, b) for a in DEGENERATE for b in DEGENERATE], jnp.float32)
    # Fractional powers are the risky ones: x^0.5 has an unbounded slope at 0.
    for eps, power in [(0.0, 1.0), (1e-7, 0.5)]:
        for x in _values_and_grads(pairs[:, 0], pairs[:, 1], eps, power):
            assert jnp.all(jnp.isfinite(x))


coord = st.sampled_from([-2.0, -1.0, 0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 1e-3, 1e4])


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (2, 36, 4), elements=coord))
def test_values_and_gradients_stay_finite(b):
    # Same shapes and options as the degenerate pairs above: no new compilation.
    for x in _values_and_grads(jnp.asarray(b[0]), jnp.asarray(b[1]), 0.0, 1.0):
        assert jnp.all(jnp.isfinite(x))


def test_nan_pairs_stay_local_and_dtypes():
    rng = np.random.default_rng(3)
    pred = ref.random_boxes(rng, (4,)).astype(np.float32)
    target = ref.random_boxes(rng, (4,)).astype(np.float32)
    clean = all_losses(pred, target)
    pred[2, 1] = np.nan
    dirty = all_losses(pred, target)
    for name in NAMES:
        got = np.asarray(dirty[name])
        assert np.isnan(got[2])
        np.testing.assert_array_equal(got[[0, 1, 3]], np.asarray(clean[name])[[0, 1, 3]])
    ints = jnp.array([[0, 0, 4, 4]]), jnp.array([[1, 1, 3, 3]])
    for name in NAMES:
        out = FUNCS[name](*ints)
        assert out.dtype == jnp.float32
        half = FUNCS[name](*(x.astype(jnp.bfloat16) for x in ints))
        assert half.dtype == jnp.bfloat16
        np.testing.assert_allclose(half.astype(jnp.float32), out, atol=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_the_argument(name):
    f, good = FUNCS[name], jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="pred.*4"):
        f(jnp.zeros((3, 5)), good)
    with pytest.raises(ValueError, match="target.*4"):
        f(good, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        f(jnp.zeros((2, 3, 4)), jnp.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="fmt"):
        f(good, good, fmt="xyhw")
    with pytest.raises(ValueError, match="reduction"):
        f(good, good, reduction="avg")
    with pytest.raises(TypeError, match="eps"):
        f(good, good, eps=0)
    with pytest.raises(ValueError, match="eps"):
        f(good, good, eps=-1.0)
    with pytest.raises(TypeError, match="power"):
        f(good, good, power=3)
    with pytest.raises(ValueError, match="power"):
        f(good, good, power=0.0)
    if name == "eiou_loss":
        with pytest.raises(ValueError, match="focal_gamma"):
            f(good, good, focal_gamma=-0.5)
    if name == "siou_loss":
        with pytest.raises(ValueError, match="theta"):
            f(good, good, theta=0.5)


def test_float16_gradients_of_coinciding_zero_width_boxes_are_finite():
    # Before: with eps = 1e-7 the union (or enclosing area) 0 made the gradient 1 / eps =
    # 5e6 in float32, +-inf once cast to float16. Every loss is locally constant for
    # such a pair (moving one side of one box leaves IoU 0 and C - U = 0), so each
    # gradient is 0.
    box = np.array([[1, 1, 1, 3], [2, 0, 5, 0]], np.float32)  # zero width, zero height
    for dtype in (jnp.float16, jnp.float32):
        p = jnp.asarray(box, dtype)
        t = jnp.asarray(box, dtype)
        grads = jax.grad(lambda p, t=t: sum(jnp.sum(v) for v in all_losses(p, t).values()))
        g = grads(p)
        assert g.dtype == dtype and jnp.all(jnp.isfinite(g)), g
        np.testing.assert_array_equal(np.asarray(g, np.float32), 0.0)
