"""A custom gradient on a real case: CIoU's trade-off ``alpha`` held constant.

    python experiments/contrast/custom_gradient.py [--n 64]

CIoU (Zheng et al., AAAI 2020) adds ``alpha * v`` with ``alpha = v / ((1 - IoU) + v)``;
the authors treat ``alpha`` as a constant in the backward pass, and torchvision computes it
under ``torch.no_grad()``. This script writes that rule four ways and checks they give the
same gradient with respect to the predicted boxes:

- PyTorch, ``with torch.no_grad(): alpha = ...`` (the torchvision way);
- PyTorch, a ``torch.autograd.Function`` whose backward returns ``alpha * grad`` for ``v``
  and nothing for ``IoU``;
- JAX, ``jaxvision.losses.ciou_loss`` (``lax.stop_gradient(alpha)`` inside);
- JAX, a ``jax.custom_vjp`` term with the same backward as the autograd.Function;

and shows the gradient that differentiating ``alpha`` would give instead. What differs
beyond the value: a ``custom_vjp`` function has no forward-mode rule (``jax.jvp`` through
it fails, and with it a forward-over-reverse Hessian), while ``stop_gradient`` composes
with every transformation; and an ``autograd.Function`` written the classic way
(``forward(ctx, ...)``) is refused by ``torch.func`` transforms until it is rewritten with
``setup_context``.
"""

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxvision import losses

EPS = 1e-7


def random_boxes(rng, n):
    xy = rng.uniform(0, 50, (n, 2))
    wh = rng.uniform(2, 30, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# --- PyTorch ----------------------------------------------------------------------------


def torch_terms(p, t):
    """IoU, the distance penalty and v of aligned xyxy boxes (the paper's formulas)."""
    iw = (torch.minimum(p[:, 2], t[:, 2]) - torch.maximum(p[:, 0], t[:, 0])).clamp(min=0)
    ih = (torch.minimum(p[:, 3], t[:, 3]) - torch.maximum(p[:, 1], t[:, 1])).clamp(min=0)
    wp, hp, wt, ht = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1], t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    inter = iw * ih
    iou = inter / (wp * hp + wt * ht - inter + EPS)
    cw = torch.maximum(p[:, 2], t[:, 2]) - torch.minimum(p[:, 0], t[:, 0])
    ch = torch.maximum(p[:, 3], t[:, 3]) - torch.minimum(p[:, 1], t[:, 1])
    dx = (p[:, 0] + p[:, 2] - t[:, 0] - t[:, 2]) / 2
    dy = (p[:, 1] + p[:, 3] - t[:, 1] - t[:, 3]) / 2
    dist = (dx**2 + dy**2) / (cw**2 + ch**2 + EPS)
    v = (4 / math.pi**2) * (torch.atan(wt / ht) - torch.atan(wp / hp)) ** 2
    return iou, dist, v


class AspectTerm(torch.autograd.Function):
    """``alpha * v`` with ``alpha`` a constant of the backward pass."""

    @staticmethod
    def forward(ctx, v, iou):
        alpha = v / ((1 - iou) + v + EPS)
        ctx.save_for_backward(alpha)
        return alpha * v

    @staticmethod
    def backward(ctx, grad):
        (alpha,) = ctx.saved_tensors
        return grad * alpha, None


def torch_ciou(p, t, rule):
    iou, dist, v = torch_terms(p, t)
    if rule == "no_grad":
        with torch.no_grad():
            alpha = v / ((1 - iou) + v + EPS)
        aspect = alpha * v
    elif rule == "function":
        aspect = AspectTerm.apply(v, iou)
    else:  # differentiate alpha too
        aspect = v / ((1 - iou) + v + EPS) * v
    return (1 - iou + dist + aspect).sum()


def torch_grad(pred, target, rule):
    p = torch.tensor(pred, requires_grad=True)
    torch_ciou(p, torch.tensor(target), rule).backward()
    return p.grad.numpy()


def torch_func_refuses_the_classic_function(pred, target):
    try:
        torch.func.grad(lambda p: torch_ciou(p, torch.tensor(target), "function"))(
            torch.tensor(pred)
        )
    except RuntimeError as error:
        return str(error).split(". ")[0]
    return "no error"


# --- JAX --------------------------------------------------------------------------------


@jax.custom_vjp
def aspect_term(v, iou):
    return v / ((1 - iou) + v + EPS) * v


def _aspect_fwd(v, iou):
    alpha = v / ((1 - iou) + v + EPS)
    return alpha * v, alpha


def _aspect_bwd(alpha, grad):
    return grad * alpha, None


aspect_term.defvjp(_aspect_fwd, _aspect_bwd)


def jax_ciou_custom_vjp(p, t):
    iw = jnp.clip(jnp.minimum(p[:, 2], t[:, 2]) - jnp.maximum(p[:, 0], t[:, 0]), 0)
    ih = jnp.clip(jnp.minimum(p[:, 3], t[:, 3]) - jnp.maximum(p[:, 1], t[:, 1]), 0)
    wp, hp, wt, ht = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1], t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    inter = iw * ih
    iou = inter / (wp * hp + wt * ht - inter + EPS)
    cw = jnp.maximum(p[:, 2], t[:, 2]) - jnp.minimum(p[:, 0], t[:, 0])
    ch = jnp.maximum(p[:, 3], t[:, 3]) - jnp.minimum(p[:, 1], t[:, 1])
    dx = (p[:, 0] + p[:, 2] - t[:, 0] - t[:, 2]) / 2
    dy = (p[:, 1] + p[:, 3] - t[:, 1] - t[:, 3]) / 2
    dist = (dx**2 + dy**2) / (cw**2 + ch**2 + EPS)
    v = (4 / math.pi**2) * (jnp.arctan(wt / ht) - jnp.arctan(wp / hp)) ** 2
    return jnp.sum(1 - iou + dist + aspect_term(v, iou))


def library_loss(p, t):
    return losses.ciou_loss(p, t, reduction="sum", eps=EPS)


def jvp_through_custom_vjp_fails(pred, target):
    tangent = jnp.ones_like(pred)
    try:  # traced under jit, so the error comes at trace time, before any compute
        jax.jit(lambda p: jax.jvp(lambda p: jax_ciou_custom_vjp(p, target), (p,), (tangent,)))(pred)
    except TypeError as error:
        return str(error).split("\n")[0][:100]
    return "no error"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    pred, target = random_boxes(rng, args.n), random_boxes(rng, args.n)

    grads = {
        "torch no_grad alpha (torchvision)": torch_grad(pred, target, "no_grad"),
        "torch autograd.Function": torch_grad(pred, target, "function"),
        "jaxvision.losses.ciou_loss (stop_gradient)": np.asarray(
            jax.jit(jax.grad(library_loss))(pred, target)
        ),
        "jax.custom_vjp": np.asarray(jax.jit(jax.grad(jax_ciou_custom_vjp))(pred, target)),
    }
    full = torch_grad(pred, target, "differentiated")
    ref = grads["torch no_grad alpha (torchvision)"]
    scale = np.abs(ref).max()
    print(f"CIoU gradient w.r.t. {args.n} predicted boxes, alpha held constant:")
    for name, g in grads.items():
        print(
            f"  {name:45s} max |diff| vs torchvision rule / max|g|: "
            f"{np.abs(g - ref).max() / scale:.1e}"
        )
    print(
        f"  {'alpha differentiated (not the paper rule)':45s} max |diff| / max|g|: "
        f"{np.abs(full - ref).max() / scale:.1e}"
    )
    jvp_error = jvp_through_custom_vjp_fails(pred, target)
    tangent = jnp.ones_like(pred)
    _, jvp = jax.jit(lambda p: jax.jvp(lambda p: library_loss(p, target), (p,), (tangent,)))(pred)
    func_error = torch_func_refuses_the_classic_function(pred, target)
    print("What differs beyond the values:")
    print(f"  jax.jvp through the custom_vjp term -> TypeError: {jvp_error}")
    print(
        f"  jax.jvp through ciou_loss (stop_gradient) works: directional derivative "
        f"{float(jvp):.4f}"
    )
    print(f"  torch.func.grad over the classic autograd.Function -> RuntimeError: {func_error}")
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
    return {
        "max_rel_diff": {k: float(np.abs(g - ref).max() / scale) for k, g in grads.items()},
        "differentiated_alpha_rel_diff": float(np.abs(full - ref).max() / scale),
        "jvp_error": jvp_error,
        "torch_func_error": func_error,
    }


if __name__ == "__main__":
    main()
