"""What multi-size training with a spatial pyramid pooling head buys (He et al., arXiv:1406.4729).

    python experiments/spp.py --workdir runs/spp [--set steps=600] [--overwrite]

One small CNN (three 3x3 convolutions, 8-16-32 channels, two 2x2 max-pools) is trained
four ways on the same generated task (one of five shapes, 14-34 px, anywhere on a noisy
canvas whose side is 40 to 100 px):

- ``spp multi-size``: an SPP head (``nn.SpatialPyramidPooling``, levels 1, 2, 4) and each
  batch at its native size, drawn from 40, 50, ..., 100 px (one size per batch, as the
  paper alternates 180 / 224 px); tested at the native size;
- ``spp single-size``: the same network trained on images resized to 64 px, tested at the
  native size (what the SPP head alone gives, without multi-size training);
- ``fixed resize``: a flatten + dense head that only takes 64 x 64, trained and tested on
  images resized to 64 px (OpenCV area / bilinear);
- ``fixed crop``: the same fixed-size network on images centre-cropped (or zero-padded)
  to 64 px.

Accuracy by test size, including sizes outside the training range (32, 120 px), goes to a
markdown table on stdout, ``accuracy.png`` and ``metrics.jsonl`` in the workdir. The
bookkeeping (config overrides, workdir, timer, metrics file, NaN guard, summary) is the
shared harness ``jaxvision.train``. A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import cv2
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from flax import nnx

from jaxvision import nn, train

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CLASSES = ("disk", "square", "triangle", "cross", "ring")
VARIANTS = ("spp multi-size", "spp single-size", "fixed resize", "fixed crop")


@dataclasses.dataclass
class Config:
    steps: int = 400
    batch: int = 16
    lr: float = 3e-3
    width: int = 8
    train_sizes: str = "40,50,60,70,80,90,100"
    fixed_size: int = 64
    test_sizes: str = "32,40,50,60,70,80,90,100,120"
    test_per_size: int = 200
    levels: str = "1,2,4"
    log_every: int = 100
    seed: int = 0
    variants: str = ",".join(VARIANTS)


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


# --- data -------------------------------------------------------------------------------


def draw(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """One ``[size, size]`` float32 image holding one shape of class ``label``."""
    side = int(rng.integers(14, 35))
    side = min(side, size - 2)
    r = side / 2
    cy, cx = rng.uniform(r, size - r, 2)
    yy, xx = np.mgrid[:size, :size] + 0.5
    dy, dx = yy - cy, xx - cx
    if label == 0:
        mask = dy**2 + dx**2 <= r**2
    elif label == 1:
        mask = (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    elif label == 2:
        mask = (dy <= r * 0.8) & (np.abs(dx) <= (dy + r) * 0.55)
    elif label == 3:
        arm = r * 0.3
        mask = ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))
    else:
        d2 = dy**2 + dx**2
        mask = (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    image = mask * rng.uniform(0.6, 1.0) + rng.normal(0, 0.25, (size, size))
    return image.astype(np.float32)


def batch_at(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(CLASSES), n)
    images = np.stack([draw(rng, int(k), size) for k in labels])[..., None]
    return images, labels


def resize(images: np.ndarray, size: int) -> np.ndarray:
    s = images.shape[1]
    method = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im[..., 0], (size, size), interpolation=method) for im in images])[
        ..., None
    ]


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    s = images.shape[1]
    if s >= size:
        o = (s - size) // 2
        return images[:, o : o + size, o : o + size]
    o = (size - s) // 2
    out = np.zeros((len(images), size, size, images.shape[3]), images.dtype)
    out[:, o : o + s, o : o + s] = images
    return out


def preprocess(variant: str, images: np.ndarray, size: int) -> np.ndarray:
    if variant == "spp multi-size":
        return images
    if variant == "fixed crop":
        return centre_crop(images, size)
    return resize(images, size)


def test_input(variant: str, images: np.ndarray, size: int) -> np.ndarray:
    """SPP networks are tested at the native size; fixed ones as they were trained."""
    return images if variant.startswith("spp") else preprocess(variant, images, size)


# --- models -----------------------------------------------------------------------------


class Features(nnx.Module):
    def __init__(self, width: int, *, rngs: nnx.Rngs) -> None:
        chans = (1, width, 2 * width, 4 * width)
        self.convs = nnx.List(
            [nnx.Conv(i, o, (3, 3), rngs=rngs) for i, o in zip(chans[:-1], chans[1:], strict=True)]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, conv in enumerate(self.convs):
            x = jax.nn.relu(conv(x))
            if i < 2:
                x = nnx.max_pool(x, (2, 2), (2, 2))
        return x


class SppNet(nnx.Module):
    """Any input size: the SPP head gives ``sum(n * n) * 4 * width`` features."""

    def __init__(self, levels: tuple[int, ...], width: int, *, rngs: nnx.Rngs) -> None:
        self.features = Features(width, rngs=rngs)
        self.spp = nn.SpatialPyramidPooling(levels)
        self.head = nnx.Linear(sum(n * n for n in levels) * 4 * width, len(CLASSES), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.spp(self.features(x)))


class FixedNet(nnx.Module):
    """Only ``size x size`` inputs: the head flattens the ``size / 4`` feature map."""

    def __init__(self, size: int, width: int, *, rngs: nnx.Rngs) -> None:
        self.features = Features(width, rngs=rngs)
        self.head = nnx.Linear((size // 4) ** 2 * 4 * width, len(CLASSES), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x).reshape(x.shape[0], -1))


def make_model(variant: str, cfg: Config) -> nnx.Module:
    rngs = nnx.Rngs(cfg.seed)
    if variant.startswith("spp"):
        return SppNet(ints(cfg.levels), cfg.width, rngs=rngs)
    return FixedNet(cfg.fixed_size, cfg.width, rngs=rngs)


# --- training ---------------------------------------------------------------------------


def make_step(graphdef: nnx.GraphDef, opt: optax.GradientTransformation) -> Callable:
    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == y)

    @jax.jit
    def step(params, opt_state, x, y):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, "acc": acc}

    return step


def train_variant(variant, cfg, writer, timer):
    model = make_model(variant, cfg)
    graphdef, params = nnx.split(model)
    opt = optax.adam(optax.cosine_decay_schedule(cfg.lr, cfg.steps))
    opt_state = opt.init(params)
    step = make_step(graphdef, opt)
    rng = np.random.default_rng(cfg.seed)  # the same training images for every variant
    sizes = ints(cfg.train_sizes)
    compiled = set()
    for i in range(cfg.steps):
        with timer("data"):
            images, labels = batch_at(rng, cfg.batch, int(rng.choice(sizes)))
            x = preprocess(variant, images, cfg.fixed_size)
        with timer("compile" if x.shape not in compiled else "step"):
            params, opt_state, metrics = step(params, opt_state, x, labels)
            values = train.check_finite(i + 1, metrics)
        compiled.add(x.shape)
        if train.every(i + 1, cfg.log_every, total=cfg.steps):
            writer.write(i + 1, variant=variant, **values)
            print(
                f"{variant:16s} step {i + 1:5d} loss {values['loss']:.3f} acc {values['acc']:.3f}"
            )
    return nnx.merge(graphdef, params)


def evaluate(variant, model, cfg, timer):
    predict = nnx.jit(lambda model, x: jnp.argmax(model(x), -1))
    accuracy = {}
    for size in ints(cfg.test_sizes):
        rng = np.random.default_rng(10_000 + size)  # the same test images for every variant
        images, labels = batch_at(rng, cfg.test_per_size, size)
        with timer("eval"):
            pred = np.asarray(predict(model, test_input(variant, images, cfg.fixed_size)))
        accuracy[size] = float(np.mean(pred == labels))
    return accuracy


# --- report -----------------------------------------------------------------------------


def table(results: dict[str, dict[int, float]], cfg: Config) -> str:
    lo, hi = min(ints(cfg.train_sizes)), max(ints(cfg.train_sizes))
    lines = ["| test size (px) | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for size in ints(cfg.test_sizes):
        note = "" if lo <= size <= hi else " (outside training)"
        cells = " | ".join(f"{results[v][size]:.3f}" for v in results)
        lines.append(f"| {size}{note} | {cells} |")
    means = " | ".join(f"{np.mean(list(r.values())):.3f}" for r in results.values())
    lines.append(f"| mean | {means} |")
    return "\n".join(lines)


def plot(results: dict[str, dict[int, float]], cfg: Config, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = ints(cfg.train_sizes)
    ax.axvspan(min(sizes), max(sizes), color="0.92", label="training sizes")
    for variant, acc in results.items():
        ax.plot(list(acc), list(acc.values()), marker="o", label=variant)
    ax.axvline(cfg.fixed_size, color="0.5", ls=":", lw=1)
    ax.set(xlabel="test image size (px)", ylabel="accuracy", ylim=(0, 1.02))
    ax.set_title(f"{len(CLASSES)} shapes, {cfg.steps} steps of {cfg.batch}")
    ax.legend(fontsize=8, loc="lower center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="runs/spp")
    parser.add_argument("--set", action="append", default=[], help="field=value")
    parser.add_argument("--overwrite", action="store_true", help="move an old run aside")
    args = parser.parse_args(argv)
    cfg = train.override(Config(), args.set)
    run = train.Run.open(args.workdir, cfg, fresh=True, overwrite=args.overwrite)
    writer = train.MetricsWriter(run.workdir / "metrics.jsonl")
    timer = train.Timer()
    results = {}
    for variant in cfg.variants.split(","):
        if variant not in VARIANTS:
            raise train.ConfigError(f"variants: {variant!r} is not one of {VARIANTS}")
        model = train_variant(variant, cfg, writer, timer)
        results[variant] = evaluate(variant, model, cfg, timer)
        writer.write(
            cfg.steps, variant=variant, **{f"acc@{s}": a for s, a in results[variant].items()}
        )
    run.close()
    print(table(results, cfg))
    plot(results, cfg, run.workdir / "accuracy.png")
    summary = {
        **{f"{v} mean acc": round(float(np.mean(list(r.values()))), 4) for v, r in results.items()},
        **timer.summary(),
    }
    train.print_summary(summary)
    return {"accuracy": results, **summary}


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main))
