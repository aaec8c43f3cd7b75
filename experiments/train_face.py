"""Trains a small IResNet on generated identities with softmax or a margin loss, evaluates
verification on held-out identities, and draws aligned crops and the embedding space.

One table row (about 5 minutes on the shared 2-core CPU)::

    python experiments/train_face.py --workdir runs/face/arcface --set loss=arcface

Rows of the table in BENCHMARKS.md: ``loss`` in softmax / cosface / arcface / combined with
``align=true`` (5-point alignment onto the ArcFace template) and ``align=false`` (the
whole image, resized). The Partial FC check runs the classifier on 8 simulated devices
(centres sharded over ``"model"``) and on one, and compares the loss curves::

    python experiments/train_face.py --workdir runs/face/pfc8 --set model_shards=8

The second table (margin annealed in over the first half, SphereFace's schedule) adds
``--set margin_warmup=0.5`` to the margin rows; its settings were chosen on a validation
split of the training identities (``--set val_identities=50``: train on the first 250,
evaluate on the last 50; the test identities unused). The final state is saved in
``checkpoints/`` (``experiments/face_pipeline.py`` reads it).

The third table (three seeds, ``--set seed=0/1/2``: other identities each) has softmax at
``--set steps=4000`` (its validation choice) against the annealed margin heads; the head
options ``margin``, ``centre_std``, ``centre_weight_decay`` and ``centre_lr_scale`` were
tried on the validation split (docs/face.md).

The fifth table (2026-12-01, BENCHMARKS.md) renders 48 x 48 faces and aligns 32 x 32 crops,
with 400 training identities x 12 images and 300 held-out identities x 10, 1500 steps
(chosen on ``--set val_identities=100``; docs/face.md)::

    python experiments/train_face.py --workdir runs/face/arcface32 --set render_size=48 \
        --set crop_size=32 --set train_identities=400 --set images_per_identity=12 \
        --set test_identities=300 --set steps=1500 --set loss=arcface --set margin_warmup=0.5

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
import time  # noqa: E402
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
    margin_warmup: float = 0.0  # fraction of the steps over which the margin is annealed in
    margin: float = -1.0  # < 0: the preset's; else ArcFace's m2 / CosFace's m3 / SphereFace's m1
    centre_std: float = 0.01  # init std of the centres (insightface: 0.01, norm 0.11 at 128-d)
    centre_weight_decay: float = -1.0  # < 0: weight_decay; weight decay on the centres
    centre_lr_scale: float = 1.0  # the centres' learning rate over the backbone's
    val_identities: int = 0  # > 0: evaluate on the last ones of the training identities
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
    out = []
    for i in range(0, len(images), 512):  # zero-padded chunks of 512: one compile
        x, lm = images[i:i + 512], landmarks[i:i + 512]
        pad = 512 - len(x)
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        lm = np.concatenate([lm, np.zeros((pad, *lm.shape[1:]), lm.dtype)])
        out.append(np.asarray(fn(x, lm))[: 512 - pad])
    return np.concatenate(out)


def num_classes(cfg: Config) -> int:
    """Identities the classifier is trained on (the validation ones are taken out)."""
    return cfg.train_identities - cfg.val_identities


def datasets(cfg: Config) -> tuple[dict, dict, data.FaceImages]:
    """Training crops and evaluation crops (held-out identities, or the validation split).

    The identities are the same for every setting: ``val_identities = V`` trains on the
    first ``train_identities - V`` and evaluates on the last ``V`` training identities
    (images of another seed); the held-out test identities are never seen then.
    """
    ids = data.sample_identities(cfg.train_identities + cfg.test_identities, seed=cfg.seed,
                                 spread=cfg.identity_spread)
    n = num_classes(cfg)
    train_labels = np.repeat(np.arange(n), cfg.images_per_identity)
    if cfg.val_identities:
        first, count, seed = n, cfg.val_identities, cfg.seed + 3
    else:
        first, count, seed = cfg.train_identities, cfg.test_identities, cfg.seed + 2
    test_labels = first + np.repeat(np.arange(count), cfg.test_images_per_identity)
    raw_train = data.generate_faces(ids, train_labels, size=cfg.render_size, seed=cfg.seed + 1)
    raw_test = data.generate_faces(ids, test_labels, size=cfg.render_size, seed=seed)
    train_set = {"x": crops(raw_train.images, raw_train.landmarks, cfg), "y": train_labels}
    test_set = {"x": crops(raw_test.images, raw_test.landmarks, cfg), "y": test_labels - first}
    return train_set, test_set, raw_test


# ----------------------------------------------------------------------------- model
def build(cfg: Config, mesh) -> tuple:
    """The backbone (split into graphs and states) and the classifier head's parameters."""
    model = models.iresnet_cpu(cfg.crop_size).build(rngs=nnx.Rngs(cfg.seed))
    model.train()
    graph_train, backbone, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    model.eval()
    graph_eval = nnx.split(model, nnx.Param, nnx.BatchStat)[0]
    dim, n = model.config.embedding_dim, num_classes(cfg)
    key = jax.random.key(cfg.seed + 7)
    if cfg.loss == "softmax":
        head = {"w": jax.random.normal(key, (dim, n)) * dim**-0.5, "b": jnp.zeros(n)}
        head_specs = {"w": P(), "b": P()}
    else:
        rows = cfg.model_shards * parallel.num_local_classes(n, cfg.model_shards)
        head = {"centres": cfg.centre_std * jax.random.normal(key, (rows, dim))}
        # The annealed loss (one device) takes the centres whole; Partial FC shards them.
        head_specs = {"centres": P() if cfg.margin_warmup > 0 else P("model", None)}
    params = {"backbone": backbone, "head": head}
    specs = {"backbone": jax.tree.map(lambda _: P(), backbone), "head": head_specs}
    return graph_train, graph_eval, params, stats, specs


MARGIN_FIELD = {"arcface": "m2", "cosface": "m3", "sphereface": "m1"}


def margin_options(cfg: Config) -> dict:
    """The margin head's options: the preset, ``scale = cfg.scale`` and ``cfg.margin``."""
    preset = {**losses.MARGIN_PRESETS[cfg.loss], "scale": cfg.scale}
    if cfg.margin >= 0:
        if cfg.loss not in MARGIN_FIELD:
            raise ValueError(f"`margin` sets one of {sorted(MARGIN_FIELD)}'s margins, "
                             f"not {cfg.loss!r}'s")
        preset[MARGIN_FIELD[cfg.loss]] = cfg.margin
    return preset


def annealed_margin_loss(emb, labels, centres, alpha, cfg: Config):
    """SphereFace's annealing: target logit ``(1 - alpha) s cos + alpha s psi(theta)``.

    ``alpha`` (traced, per sample) rises from 0 to 1 over ``margin_warmup`` of the steps:
    plain normalised softmax first, the full margin from then on (Liu et al. 2017, Sec. 3.4
    use ``psi' = (lambda cos + psi) / (1 + lambda)`` with ``lambda`` annealed to a small
    value; ``alpha = 1 / (1 + lambda)``). One device (``model_shards = 1``).
    """
    cos = ops.pairwise_cosine(emb, centres[: num_classes(cfg)])
    margin = losses.margin_logits(cos, labels, **margin_options(cfg))
    logits = cfg.scale * cos + alpha[:, None] * (margin - cfg.scale * cos)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_loss(cfg: Config, graph_train):
    preset = {} if cfg.loss == "softmax" else margin_options(cfg)

    def loss_fn(params, stats, batch, rng, axis_name):
        model = nnx.merge(graph_train, params["backbone"], stats, copy=True)
        emb = model(batch["x"])
        new_stats = nnx.state(model, nnx.BatchStat)
        head = params["head"]
        if cfg.loss == "softmax":
            logits = emb @ head["w"] + head["b"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        elif cfg.margin_warmup > 0:
            loss = annealed_margin_loss(emb, batch["y"], head["centres"], batch["alpha"], cfg)
        else:
            loss = parallel.partial_fc_loss(
                emb, batch["y"], head["centres"], num_classes=num_classes(cfg),
                gather=False, **preset,
            )
        return loss, (new_stats, {})

    return loss_fn


def margin_alpha(step: int, cfg: Config) -> float:
    """The annealing weight of the margin at ``step`` (0-based): linear from 0 to 1."""
    ramp = cfg.margin_warmup * cfg.steps
    return 1.0 if ramp <= 0 else min(1.0, step / ramp)


def _part(name: str):
    """A mask of the parameters: True on ``params[name]`` ("backbone" or "head")."""
    return lambda params: {k: jax.tree.map(lambda _, on=k == name: on, v)
                           for k, v in params.items()}


def _scale_head(factor: float) -> optax.GradientTransformation:
    """Multiplies the head's updates by ``factor`` (stateless): its own learning rate."""
    def update(updates, state, params=None):
        return {**updates, "head": jax.tree.map(lambda u: factor * u, updates["head"])}, state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def optimizer(cfg: Config) -> optax.GradientTransformation:
    """SGD with momentum, cosine schedule and weight decay (insightface's).

    ``centre_weight_decay`` (when >= 0 and not ``weight_decay``) and ``centre_lr_scale``
    (when not 1) give the classifier head its own weight decay and learning rate (SGD's
    update of the head times the factor; momentum is linear, so this is SGD at
    ``lr * centre_lr_scale`` on the head). The defaults build insightface's single group.
    """
    warmup = min(cfg.warmup_steps, cfg.steps // 2)
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, cfg.steps)
    wd_head = cfg.weight_decay if cfg.centre_weight_decay < 0 else cfg.centre_weight_decay
    if wd_head == cfg.weight_decay:
        decay = [optax.add_decayed_weights(cfg.weight_decay)]
    else:
        decay = [optax.add_decayed_weights(cfg.weight_decay, mask=_part("backbone")),
                 optax.add_decayed_weights(wd_head, mask=_part("head"))]
    scale = [] if cfg.centre_lr_scale == 1 else [_scale_head(cfg.centre_lr_scale)]
    return optax.chain(*decay, optax.sgd(schedule, momentum=0.9), *scale)


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


def head_norms(params: dict) -> dict:
    """Median norm of the class centres (softmax: weight columns), a training diagnostic."""
    head = params["head"]
    w = head["centres"] if "centres" in head else np.asarray(head["w"]).T
    return {"centre_norm": float(np.median(np.linalg.norm(w, axis=1)))}


def fit_diagnostics(graph_eval, params, stats, train_set: dict, cfg: Config) -> dict:
    """How the head fits (eval mode, up to 1000 training images): the mean angle to the own
    centre, the mean largest cosine to another centre, train top-1 by cosine.

    Softmax: against its normalised weight columns (its logits also have a bias).
    """
    x, y = train_set["x"][:1000], train_set["y"][:1000]

    @jax.jit
    def f(x):
        return nnx.merge(graph_eval, params["backbone"], stats)(x)

    emb = np.concatenate([np.asarray(f(x[i:i + 250])) for i in range(0, len(x), 250)])
    head = params["head"]
    w = head["centres"][: num_classes(cfg)] if "centres" in head else np.asarray(head["w"]).T
    cos = np.asarray(ops.pairwise_cosine(emb, w))
    own = cos[np.arange(len(y)), y]
    other = np.where(np.arange(cos.shape[1]) == y[:, None], -np.inf, cos).max(1)
    return {"train_angle_deg": float(np.degrees(np.arccos(np.clip(own, -1, 1))).mean()),
            "train_max_other_cos": float(other.mean()),
            "train_top1": float(np.mean(cos.argmax(1) == y))}


# ----------------------------------------------------------------------------- figures
def figures(workdir: Path, raw, test_set, emb, cfg: Config) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 8, figsize=(10, 2.8))
    for k in range(8):
        i = min(k * cfg.test_images_per_identity // 2, len(raw.images) - 1)
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
    if cfg.margin_warmup > 0 and cfg.model_shards != 1:
        raise ValueError("`margin_warmup` runs on one device: set model_shards=1")
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
    # The state in the shardings the step returns, so that the second step does not
    # compile again for other input shardings.
    example = {"x": jnp.zeros((cfg.batch_size, *train_set["x"].shape[1:])),
               "y": jnp.zeros(cfg.batch_size, jnp.int32)}
    if cfg.margin_warmup > 0:
        example["alpha"] = jnp.zeros(cfg.batch_size)
    out = step_fn.eval_shape(state, example, jax.random.key(0))[0]
    state = jax.tree.map(
        lambda x, o: jax.device_put(x, jax.NamedSharding(mesh, o.sharding.spec)), state, out
    )
    writer = train.MetricsWriter(run.workdir / "metrics.jsonl")
    rng = np.random.default_rng(cfg.seed)
    for i in range(cfg.steps):
        with timer("data"):
            idx = rng.integers(0, len(train_set["y"]), cfg.batch_size)
            batch = {"x": jnp.asarray(train_set["x"][idx]), "y": jnp.asarray(train_set["y"][idx])}
            if cfg.margin_warmup > 0:
                batch["alpha"] = jnp.full(cfg.batch_size, margin_alpha(i, cfg), jnp.float32)
        with timer("compile" if i == 0 else "step"):
            state, m = step_fn(state, batch, jax.random.key(i))
            values = train.check_finite(i + 1, m)
        if train.every(i + 1, cfg.log_every, total=cfg.steps):
            writer.write(i + 1, loss=values["loss"], grad_norm=values["grad_norm"])
    with parallel.CheckpointManager(run.workdir / "checkpoints", max_to_keep=1) as ckpt:
        ckpt.save(cfg.steps, state, force=True)  # for experiments/face_pipeline.py
    with timer("eval"):
        params = jax.tree.map(np.asarray, state.params)
        stats = jax.tree.map(np.asarray, state.model_state)
        emb = embed(graph_eval, params, stats, test_set["x"])
        scores = verification(emb, test_set["y"], cfg.seed)
        fit = fit_diagnostics(graph_eval, params, stats, train_set, cfg)
        figures(run.workdir, raw_test, test_set, emb, cfg)
    run.close()
    summary = {"loss_name": cfg.loss, "align": cfg.align, "model_shards": cfg.model_shards,
               "final_loss": writer.last("loss")["loss"], **scores, **head_norms(params), **fit,
               "cpu_s": round(time.process_time(), 1), **timer.summary()}
    (Path(args.workdir) / "summary.json").write_text(json.dumps(summary, indent=1))
    train.print_summary(summary)
    return summary


if __name__ == "__main__":
    raise SystemExit(train.run_cli(main))
