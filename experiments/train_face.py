"""Trains a small IResNet on generated identities with softmax or a margin loss, evaluates
verification on held-out identities, and draws aligned crops and the embedding space.

One table row (about 5 minutes on the shared 2-core CPU)::

    python experiments/train_face.py --workdir runs/face/arcface --set loss=arcface

Rows of the table in BENCHMARKS.md: ``loss`` in softmax / cosface / arcface / combined with
``align=true`` (5-point alignment onto the ArcFace template) and ``align=false`` (the
whole image, resized). The Partial FC check runs the classifier on 8 simulated devices
(centres sharded over ``"model"``) and on one, and compares the loss curves::

    python experiments/train_face.py --workdir runs/face/pfc8 --set model_shards=8

The last line printed is one JSON object with the final metrics.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxvision import data, face, geometry, losses, metrics, models, ops, parallel, train  # noqa: E402


@dataclasses.dataclass
class Config:
    """One flat configuration; every field can be set with ``--set field=value``."""

    loss: str = "arcface"  # softmax | cosface | arcface | combined | sphereface
    align: bool = True
    train_identities: int = 300
    images_per_identity: int = 16
    test_identities: int = 100
    test_images_per_identity: int = 10
    identity_spread: float = 0.4  # how different identities are (1: most different)
    render_size: int = 24
    crop_size: int = 16
    batch_size: int = 64
    steps: int = 2000
    scale: float = 32.0  # margin heads' s (the presets' 64 suits 85k identities)
    lr: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 5e-4
    model_shards: int = 1  # devices the class centres are split over ("model" axis)
    log_every: int = 50
    seed: int = 0


# ----------------------------------------------------------------------------- data
def crops(images: np.ndarray, landmarks: np.ndarray, cfg: Config) -> np.ndarray:
    """Aligned crops (similarity onto the ArcFace template) or the whole image resized."""
    if cfg.align:
        fn = jax.jit(lambda x, lm: face.align_faces(x, lm, cfg.crop_size)[0])
    else:
        s = cfg.crop_size / cfg.render_size
        # Resizing in OpenCV's pixel-centre convention: x_out = s (x_in + 0.5) - 0.5.
        m = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]], np.float32)
        fn = jax.jit(lambda x, lm: geometry.warp_affine(x, m, cfg.crop_size))
    out = [np.asarray(fn(images[i:i + 512], landmarks[i:i + 512]))
           for i in range(0, len(images), 512)]
    return np.concatenate(out)


def datasets(cfg: Config) -> tuple[dict, dict, data.FaceImages]:
    ids = data.sample_identities(cfg.train_identities + cfg.test_identities, seed=cfg.seed,
                                 spread=cfg.identity_spread)
    train_labels = np.repeat(np.arange(cfg.train_identities), cfg.images_per_identity)
    test_labels = cfg.train_identities + np.repeat(
        np.arange(cfg.test_identities), cfg.test_images_per_identity
    )
    raw_train = data.generate_faces(ids, train_labels, size=cfg.render_size, seed=cfg.seed + 1)
    raw_test = data.generate_faces(ids, test_labels, size=cfg.render_size, seed=cfg.seed + 2)
    train_set = {"x": crops(raw_train.images, raw_train.landmarks, cfg), "y": train_labels}
    test_set = {"x": crops(raw_test.images, raw_test.landmarks, cfg),
                "y": test_labels - cfg.train_identities}
    return train_set, test_set, raw_test


# ----------------------------------------------------------------------------- model
def build(cfg: Config, mesh) -> tuple:
    """The backbone (split into graphs and states) and the classifier head's parameters."""
    model = models.iresnet_cpu(cfg.crop_size).build(rngs=nnx.Rngs(cfg.seed))
    model.train()
    graph_train, backbone, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    model.eval()
    graph_eval = nnx.split(model, nnx.Param, nnx.BatchStat)[0]
    dim, n = model.config.embedding_dim, cfg.train_identities
    key = jax.random.key(cfg.seed + 7)
    if cfg.loss == "softmax":
        head = {"w": jax.random.normal(key, (dim, n)) * dim**-0.5, "b": jnp.zeros(n)}
        head_specs = {"w": P(), "b": P()}
    else:
        rows = cfg.model_shards * parallel.num_local_classes(n, cfg.model_shards)
        head = {"centres": 0.01 * jax.random.normal(key, (rows, dim))}
        head_specs = {"centres": P("model", None)}
    params = {"backbone": backbone, "head": head}
    specs = {"backbone": jax.tree.map(lambda _: P(), backbone), "head": head_specs}
    return graph_train, graph_eval, params, stats, specs


def make_loss(cfg: Config, graph_train):
    preset = {} if cfg.loss == "softmax" else {**losses.MARGIN_PRESETS[cfg.loss],
                                                "scale": cfg.scale}

    def loss_fn(params, stats, batch, rng, axis_name):
        model = nnx.merge(graph_train, params["backbone"], stats, copy=True)
        emb = model(batch["x"])
        new_stats = nnx.state(model, nnx.BatchStat)
        head = params["head"]
        if cfg.loss == "softmax":
            logits = emb @ head["w"] + head["b"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        else:
            loss = parallel.partial_fc_loss(
                emb, batch["y"], head["centres"], num_classes=cfg.train_identities,
                gather=False, **preset,
            )
        return loss, (new_stats, {})

    return loss_fn


def optimizer(cfg: Config) -> optax.GradientTransformation:
    warmup = min(cfg.warmup_steps, cfg.steps // 2)
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, cfg.steps)
    return optax.chain(
        optax.add_decayed_weights(cfg.weight_decay), optax.sgd(schedule, momentum=0.9)
    )


# ----------------------------------------------------------------------------- evaluation
def embed(graph_eval, params, stats, images: np.ndarray) -> np.ndarray:
    """insightface's evaluation embedding: l2norm(f(x) + f(flip x))."""
    @jax.jit
    def f(x):
        model = nnx.merge(graph_eval, params["backbone"], stats)
        return ops.l2_normalize(model(x) + model(x[:, :, ::-1]))

    return np.concatenate([np.asarray(f(images[i:i + 250])) for i in range(0, len(images), 250)])


def verification(emb: np.ndarray, labels: np.ndarray, seed: int) -> dict:
    pairs, same = data.face_pairs(labels, seed=seed)
    dist = np.sum((emb[pairs[:, 0]] - emb[pairs[:, 1]]) ** 2, axis=1)  # insightface
    lfw = metrics.lfw_protocol(dist, same)
    # TAR@FAR over every pair of held-out images (more impostors than the 3000 LFW pairs).
    upper = np.triu_indices(len(labels), 1)
    sims = (emb @ emb.T)[upper]
    genuine = (labels[:, None] == labels[None, :])[upper]
    return {
        "lfw_accuracy": float(lfw.mean_accuracy),
        "lfw_std": float(np.std(np.asarray(lfw.accuracy))),
        "tar_at_far_1e-3": float(metrics.tar_at_far(sims, genuine, far=1e-3)),
        "tar_at_far_1e-2": float(metrics.tar_at_far(sims, genuine, far=1e-2)),
    }


# ----------------------------------------------------------------------------- figures
def figures(workdir: Path, raw, test_set, emb, cfg: Config) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 8, figsize=(10, 2.8))
    for k in range(8):
        i = k * cfg.test_images_per_identity // 2
        ax[0, k].imshow(raw.images[i])
        ax[0, k].scatter(*raw.landmarks[i].T, s=5, c="lime")
        ax[1, k].imshow(np.clip(test_set["x"][i], 0, 1))
        for a in ax[:, k]:
            a.axis("off")
    ax[0, 0].set_title("generated", fontsize=8, loc="left")
    ax[1, 0].set_title("aligned" if cfg.align else "resized", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(workdir / "crops.png", dpi=90)
    plt.close(fig)
    keep = test_set["y"] < 10
    centred = emb[keep] - emb[keep].mean(0)
    xy = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    fig, a = plt.subplots(figsize=(4, 4))
    a.scatter(xy[:, 0], xy[:, 1], c=test_set["y"][keep], cmap="tab10", s=12)
    a.set_title(f"held-out embeddings (PCA), {cfg.loss}", fontsize=9)
    fig.tight_layout()
    fig.savefig(workdir / "embeddings.png", dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--set", action="append", default=[], help="field=value")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)
    cfg = train.override(Config(), args.set)
    run = train.Run.open(args.workdir, cfg, fresh=args.fresh, overwrite=args.fresh)
    timer = train.Timer()
    with timer("data"):
        train_set, test_set, raw_test = datasets(cfg)
    explicit = (jax.sharding.AxisType.Explicit,) * 2
    mesh = jax.make_mesh((1, cfg.model_shards), ("data", "model"), axis_types=explicit,
                         devices=jax.devices()[: cfg.model_shards])
    graph_train, graph_eval, params, stats, specs = build(cfg, mesh)
    opt = optimizer(cfg)
    state = parallel.TrainState.create(params, opt, model_state=stats)
    step_fn = parallel.data_parallel_step(make_loss(cfg, graph_train), opt, mesh,
                                          param_specs=specs)
    writer = train.MetricsWriter(run.workdir / "metrics.jsonl")
    rng = np.random.default_rng(cfg.seed)
    for i in range(cfg.steps):
        with timer("data"):
            idx = rng.integers(0, len(train_set["y"]), cfg.batch_size)
            batch = {"x": jnp.asarray(train_set["x"][idx]), "y": jnp.asarray(train_set["y"][idx])}
        with timer("compile" if i == 0 else "step"):
            state, m = step_fn(state, batch, jax.random.key(i))
            values = train.check_finite(i + 1, m)
        if train.every(i + 1, cfg.log_every, total=cfg.steps):
            writer.write(i + 1, loss=values["loss"], grad_norm=values["grad_norm"])
    with timer("eval"):
        params = jax.tree.map(np.asarray, state.params)
        stats = jax.tree.map(np.asarray, state.model_state)
        emb = embed(graph_eval, params, stats, test_set["x"])
        scores = verification(emb, test_set["y"], cfg.seed)
        figures(run.workdir, raw_test, test_set, emb, cfg)
    run.close()
    summary = {"loss_name": cfg.loss, "align": cfg.align, "model_shards": cfg.model_shards,
               "final_loss": writer.last("loss")["loss"], **scores, **timer.summary()}
    (Path(args.workdir) / "summary.json").write_text(json.dumps(summary, indent=1))
    train.print_summary(summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main))
