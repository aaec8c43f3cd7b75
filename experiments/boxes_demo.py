"""A tour of jaxvision's box toolkit in a few seconds on a CPU.

    python experiments/boxes_demo.py

Prints the IoU family for a few hand-picked pairs, a CIoU loss and its gradient under
jit (finite even for a zero-height box, where the peers give NaN gradients), how the
IoU-family losses move a disjoint box onto its target, and NMS on random boxes with a
fixed-size, jit-friendly result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import boxes, losses

PAIRS = {
    "identical": ([0, 0, 10, 10], [0, 0, 10, 10]),
    "disjoint": ([0, 0, 1, 1], [2, 0, 3, 1]),
    "nested": ([0, 0, 4, 4], [1, 1, 3, 3]),
    "overlapping": ([0, 0, 2, 2], [1, 1, 3, 3]),
    "zero height": ([200, 599, 300, 599], [200, 500, 300, 600]),
}


def iou_family_table() -> None:
    a = jnp.array([p[0] for p in PAIRS.values()], jnp.float32)
    b = jnp.array([p[1] for p in PAIRS.values()], jnp.float32)
    funcs = [
        boxes.box_iou,
        boxes.box_giou,
        boxes.box_diou,
        boxes.box_ciou,
    ]
    values = [np.diag(np.asarray(f(a, b))) for f in funcs]
    print(f"{'pair':<12} {'IoU':>8} {'GIoU':>8} {'DIoU':>8} {'CIoU':>8}")
    for k, name in enumerate(PAIRS):
        print(f"{name:<12} " + " ".join(f"{v[k]:>8.4f}" for v in values))


def ciou_gradient() -> None:
    pred = jnp.array([[200.0, 599, 300, 599], [0, 0, 2, 1]])
    target = jnp.array([[200.0, 500, 300, 600], [0, 0, 1, 2]])
    loss_and_grad = jax.jit(
        jax.value_and_grad(lambda p: losses.ciou_loss(p, target, reduction="sum"))
    )
    loss, grad = loss_and_grad(pred)
    print(f"\nCIoU loss (sum of 2 pairs) {float(loss):.5f}; gradient wrt pred (finite):")
    print(np.array2string(np.asarray(grad), precision=5, suppress_small=True))


def fit_one_box(steps: int = 200) -> None:
    """Adam on (cx, cy, log w, log h) from a box disjoint from the target, per loss.

    IoU loss has no gradient while the boxes are disjoint; GIoU first grows the box until
    it overlaps, then stalls once it sits inside the target (its penalty is then 0);
    DIoU and CIoU pull the centres together directly (Zheng et al., AAAI 2020).
    """
    target = jnp.array([3.0, 1.0, 7.0, 6.0])
    start = boxes.box_convert(jnp.array([-2.0, -2.0, -1.0, -1.5]), "xyxy", "cxcywh")
    start = jnp.concatenate([start[:2], jnp.log(start[2:])])
    optimizer = optax.adam(0.1)

    def to_box(p):
        return boxes.box_convert(jnp.concatenate([p[:2], jnp.exp(p[2:])]), "cxcywh", "xyxy")

    def fit(loss_fn):
        def step(_, state):
            p, opt_state = state
            grad = jax.grad(lambda q: loss_fn(to_box(q), target))(p)
            updates, opt_state = optimizer.update(grad, opt_state)
            return optax.apply_updates(p, updates), opt_state

        p, _ = jax.lax.fori_loop(0, steps, step, (start, optimizer.init(start)))
        return to_box(p)

    names = ["iou_loss", "giou_loss", "diou_loss", "ciou_loss"]
    fitted = jax.jit(lambda: [fit(getattr(losses, n)) for n in names])()
    print(f"\nFitting a disjoint box to {np.asarray(target)} with Adam, {steps} steps:")
    for name, b in zip(names, fitted, strict=True):
        iou = float(boxes.box_iou(b[None], target[None])[0, 0])
        print(f"  {name:<10} -> {np.round(np.asarray(b), 2)}  IoU {iou:.3f}")


def nms_demo(n: int = 2000) -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (n, 2))
    b = jnp.asarray(np.concatenate([xy, xy + rng.uniform(20, 80, (n, 2))], 1), jnp.float32)
    s = jnp.asarray(rng.uniform(size=n), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, n))
    indices, count = jax.jit(boxes.nms, static_argnames="max_output")(b, s, 0.5, max_output=n)
    kept = np.asarray(indices[: int(count)])
    worst = float(jnp.max(jnp.triu(boxes.box_iou(b[kept], b[kept]), k=1)))
    print(
        f"\nNMS of {n} random boxes at IoU 0.5: kept {int(count)}, indices padded with -1 "
        f"to a fixed size {indices.shape[0]}\n  first kept {kept[:6]}; "
        f"largest IoU between kept boxes {worst:.4f}"
    )
    indices, count = jax.jit(boxes.batched_nms)(b, s, labels, 0.5)
    print(f"batched_nms over 3 categories: kept {int(count)}")


if __name__ == "__main__":
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}\n")
    iou_family_table()
    ciou_gradient()
    fit_one_box()
    nms_demo()
