"""DETR-R50 training-step and inference throughput: jaxvision against HF transformers.

Both sides hold the same random weights (the HF model's, imported with
``models.load_hf_detr``), see the same batch, and run the same step: forward in training
mode (dropout on), the loss, backward, gradient clipping at 0.1 and AdamW (lr 1e-4,
backbone 1e-5 on the jaxvision side).

Trained parameters (``--backbone``):
  detr     (default) DETR's recipe: the ResNet's stem and first stage frozen, its other
           three stages trained. HF means to do the same, but its filter looks for
           "stage.1" / "stage.2" / "stage.3" in the names, and its own ResNet backbone names
           them "encoder.stages.1...": no name matches, and the whole ResNet stays frozen
           (0 of its 53 parameters trainable, 18.1 M of 41.5 M in all). The peer therefore
           re-enables ``requires_grad`` on those three stages, so that both sides train the
           same 41.3 M parameters; the script checks the counts agree.
  frozen   the whole ResNet frozen on both sides (HF as it comes; jaxvision with
           ``frozen_stages=5``): only the projection and the transformer train.

Loss (``--loss``):
  standin  the same simple loss on both sides, for every decoder layer (final and
           auxiliary): cross-entropy of the logits against fixed per-query labels plus
           5 x L1 of the boxes against fixed per-query boxes (no matching);
  real     DETR's criterion: HF's own loss (``labels=``, scipy matcher on the host) and
           ``jaxvision.models.detr_loss`` (exact matching on the device);
  auto     (default) real when ``jaxvision.models.detr_loss`` exists, else standin.

Precision: fp32, and bf16 (``torch.autocast`` on the peer; ``DETRConfig.dtype=bfloat16``
on jaxvision, float32 parameters and outputs).

MFU = XLA's FLOP count of the compiled jaxvision step / step time / peak FLOP/s of the
device (``--peak-tflops``; on H100/H200 989 TFLOP/s for bf16 and 494 for fp32, which XLA
runs as TF32). The peer is charged the same FLOP count (same model and shapes).

Run::

    python experiments/bench/detr_step.py                 # --preset cpu where no GPU
    python experiments/bench/detr_step.py --preset gpu    # 4x800x1066 and 16x512x512
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxvision import models, parallel
from jaxvision._src.models import conv_norm

PRESETS = {
    "cpu": {"shapes": [(2, 256, 256)], "dtypes": ["fp32"], "warmup": 1, "iters": 7},
    "gpu": {
        "shapes": [(4, 800, 1066), (16, 512, 512)],
        "dtypes": ["fp32", "bf16"],
        "warmup": 3,
        "iters": 10,
    },
}
NUM_CLASSES, MAX_TARGETS = 91, 20


def interleaved_medians(fns: dict, warmup: int, iters: int) -> dict[str, float]:
    """Median seconds of each function, called in turn ``iters`` rounds after ``warmup``
    rounds, so that a shared machine's load hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_batch(rng: np.random.Generator, b: int, h: int, w: int, q: int) -> dict:
    images = rng.standard_normal((b, h, w, 3)).astype(np.float32)
    mask = np.ones((b, h, w), bool)
    mask[0, :, (w * 3) // 4 :] = False  # one padded image, as in a real batch
    images[~mask] = 0
    labels = np.full((b, q), NUM_CLASSES, np.int32)  # no-object by default
    labels[:, : q // 10] = rng.integers(0, NUM_CLASSES, (b, q // 10))
    cxcy = rng.uniform(0.2, 0.8, (b, q, 2))
    wh = rng.uniform(0.05, 0.35, (b, q, 2))
    qboxes = np.concatenate([cxcy, wh], -1).astype(np.float32)
    counts = rng.integers(1, MAX_TARGETS, b)
    tmask = np.arange(MAX_TARGETS)[None] < counts[:, None]
    tlabels = rng.integers(0, NUM_CLASSES, (b, MAX_TARGETS)).astype(np.int32)
    tboxes = np.concatenate(
        [rng.uniform(0.2, 0.8, (b, MAX_TARGETS, 2)), rng.uniform(0.05, 0.35, (b, MAX_TARGETS, 2))],
        -1,
    ).astype(np.float32)
    return dict(
        images=images,
        mask=mask,
        query_labels=labels,
        query_boxes=qboxes,
        labels=tlabels,
        boxes=tboxes,
        target_mask=tmask,
    )


# ----------------------------------------------------------------------------- jaxvision
def standin_loss_jax(out: dict, labels: jax.Array, boxes: jax.Array) -> jax.Array:
    total = 0.0
    for o in (out, *out.get("aux", ())):
        ce = optax.softmax_cross_entropy_with_integer_labels(o["logits"], labels).mean()
        total = total + ce + 5.0 * jnp.abs(o["boxes"] - boxes).mean()
    return total


def jax_side(hf_state: dict, hf_config: dict, batch: dict, dtype: str, loss: str, args) -> dict:
    config = models.detr_config_from_hf(hf_config)
    config = dataclasses.replace(config, dtype=jnp.bfloat16 if dtype == "bf16" else None)
    if args.backbone == "frozen":  # the stem and all four stages
        config = dataclasses.replace(
            config, backbone=dataclasses.replace(config.backbone, frozen_stages=5)
        )
    model = models.load_hf_detr(hf_state, config)
    graphdef, params, rng_state, frozen = nnx.split(model, nnx.Param, nnx.RngState, ...)
    # Plain nested dicts of arrays, as the main job's train state holds them
    # (experiments/detr_task.py): a tree of nnx.Variable costs ~15-20 ms of Python per
    # step to flatten and rebuild here (about 1000 leaves); nnx.merge takes either.
    params, rng_state = nnx.to_pure_dict(params), nnx.to_pure_dict(rng_state)
    tx = models.detr_optimizer(config)
    opt_state = tx.init(params)
    mask = models.detr_trainable_mask(params, config)
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True)
    trained = sum(x.size for x, m in leaves if m)
    criterion = getattr(models, "detr_loss", None) if loss == "real" else None

    def loss_fn(params, rng_state, x):
        m = nnx.merge(graphdef, params, rng_state, frozen, copy=True)
        m.train()
        out = m(x["images"], x["mask"])
        if criterion is not None:
            targets = {"labels": x["labels"], "boxes": x["boxes"], "mask": x["target_mask"]}
            value, _ = criterion(out, targets, num_classes=NUM_CLASSES)
        else:
            value = standin_loss_jax(out, x["query_labels"], x["query_boxes"])
        return value, nnx.to_pure_dict(nnx.state(m, nnx.RngState))

    # The library's train steps donate their state on accelerators, not on the CPU
    # (parallel.donates_by_default): the same choice here.
    donate = (0, 1, 2) if parallel.donates_by_default(jax.devices()) else ()

    @functools.partial(jax.jit, donate_argnums=donate)
    def train_step(params, rng_state, opt_state, x):
        (value, rng_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rng_state, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rng_state, opt_state, value

    @jax.jit
    def infer(params, rng_state, images, mask):
        m = nnx.merge(graphdef, params, rng_state, frozen, copy=True)
        return m(images, mask)

    x = jax.device_put({k: v for k, v in batch.items()})
    t = time.perf_counter()
    compiled = train_step.lower(params, rng_state, opt_state, x).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    state = [params, rng_state, opt_state]

    def step():
        p, r, o, value = compiled(*state, x)
        state[:] = [p, r, o]
        jax.block_until_ready(value)

    def run_infer():
        jax.block_until_ready(infer(state[0], state[1], x["images"], x["mask"]))

    return dict(
        step=step,
        infer=run_infer,
        compile_s=compile_s,
        flops=flops,
        compiled=compiled,
        trained=trained,
    )


# ----------------------------------------------------------------------------- HF peer
def torch_side(hf_model, batch: dict, dtype: str, loss: str, args) -> dict:
    import torch

    model = hf_model.train()
    if args.backbone == "detr":  # HF's own filter misses these names (module docstring)
        for name, p in model.named_parameters():
            if re.search(r"backbone\.model\.encoder\.stages\.[123]\.", name):
                p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)
    device = next(model.parameters()).device
    # Each timed call waits for the GPU, as block_until_ready does on the jaxvision side.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def put(x: np.ndarray):
        return torch.from_numpy(x).to(device)

    px = put(batch["images"].transpose(0, 3, 1, 2).copy())
    pm = put(batch["mask"].astype(np.int64))
    qlabels = put(batch["query_labels"].astype(np.int64))
    qboxes = put(batch["query_boxes"])
    labels = [
        {
            "class_labels": put(batch["labels"][i][m].astype(np.int64)),
            "boxes": put(batch["boxes"][i][m]),
        }
        for i, m in enumerate(batch["target_mask"])
    ]

    def standin(out_model):
        hs = out_model.intermediate_hidden_states  # [L, B, Q, D]
        logits = model.class_labels_classifier(hs).float()
        boxes = model.bbox_predictor(hs).sigmoid().float()
        total = 0.0
        for layer in range(hs.shape[0]):
            ce = torch.nn.functional.cross_entropy(logits[layer].flatten(0, 1), qlabels.flatten())
            total = total + ce + 5.0 * (boxes[layer] - qboxes).abs().mean()
        return total

    def step():
        if loss == "real":
            value = model(pixel_values=px, pixel_mask=pm, labels=labels).loss
        else:
            value = standin(model.model(pixel_values=px, pixel_mask=pm))
        opt.zero_grad()
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        opt.step()
        sync()

    autocast = torch.autocast("cpu" if args.preset == "cpu" else "cuda", dtype=torch.bfloat16)

    def in_mode(fn, train: bool):
        def run():
            model.train(train)
            if dtype == "bf16":
                with autocast:
                    fn()
            else:
                fn()

        return run

    def infer():
        with torch.no_grad():
            model(pixel_values=px, pixel_mask=pm)
        sync()

    trained = sum(p.numel() for p in params)
    return dict(step=in_mode(step, True), infer=in_mode(infer, False), trained=trained)


def build_hf(device: str):
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    torch.manual_seed(0)
    config = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=ResNetConfig(out_features=["stage4"]),
        num_labels=NUM_CLASSES,
        auxiliary_loss=True,
    )
    model = DetrForObjectDetection(config)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return model.to(device), state, config.to_dict()


def main() -> None:
    on_gpu = jax.default_backend() == "gpu"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="gpu" if on_gpu else "cpu")
    parser.add_argument("--dtypes", default=None, help="comma list of fp32,bf16")
    parser.add_argument("--loss", choices=["auto", "standin", "real"], default="auto")
    parser.add_argument("--iters", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--shape", default=None, help="one BxHxW instead of the preset's")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--backbone",
        choices=["detr", "frozen"],
        default="detr",
        help="detr: stem and first stage frozen on both sides; frozen: the whole ResNet",
    )
    parser.add_argument(
        "--cpu-lowerings",
        default=None,
        help="comma list of the ResNet's CPU lowerings to compare in one run "
        "(fold, plain; default: the library's)",
    )
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    args.iters = args.iters or preset["iters"]
    args.warmup = args.warmup if args.warmup is not None else preset["warmup"]
    dtypes = args.dtypes.split(",") if args.dtypes else preset["dtypes"]
    loss = args.loss
    if loss == "auto":
        loss = "real" if hasattr(models, "detr_loss") else "standin"
    default_lowering = conv_norm.CPU_LOWERING
    lowerings = args.cpu_lowerings.split(",") if args.cpu_lowerings else [default_lowering]
    device = jax.devices()[0]
    print(f"jax {jax.__version__} on {device.device_kind}; preset {args.preset}; loss {loss}")
    hf_model, hf_state, hf_config = build_hf("cuda" if args.preset == "gpu" else "cpu")
    rng = np.random.default_rng(0)
    shapes = [tuple(map(int, args.shape.split("x")))] if args.shape else preset["shapes"]
    for b, h, w in shapes:
        batch = make_batch(rng, b, h, w, hf_config["num_queries"])
        for dtype in dtypes:
            sides = {}
            for lowering in lowerings:
                conv_norm.CPU_LOWERING = lowering  # read while tracing, in jax_side
                sides[lowering] = jax_side(hf_state, hf_config, batch, dtype, loss, args)
            conv_norm.CPU_LOWERING = default_lowering
            if not args.skip_peer:
                sides["peer"] = torch_side(hf_model, batch, dtype, loss, args)
                counts = {k: v["trained"] for k, v in sides.items()}
                if len(set(counts.values())) != 1:
                    raise SystemExit(f"the sides train different parameter counts: {counts}")
            steps = interleaved_medians(
                {k: v["step"] for k, v in sides.items()}, args.warmup, args.iters
            )
            infers = interleaved_medians(
                {k: v["infer"] for k, v in sides.items()}, args.warmup, args.iters
            )
            peer = None if args.skip_peer else dict(step_s=steps["peer"], infer_s=infers["peer"])
            for lowering in lowerings:
                ours = sides[lowering] | dict(step_s=steps[lowering], infer_s=infers[lowering])
                report(b, h, w, dtype, lowering, ours, peer, device, args)


def report(b, h, w, dtype, lowering, ours, peer, device, args) -> None:
    """Prints one result row (JSON, then a readable line)."""
    peak = args.peak_tflops or (
        {"bf16": 989.0, "fp32": 494.0}[dtype]
        if "H100" in device.device_kind or "H200" in device.device_kind
        else None
    )
    row = {
        "shape": f"{b}x{h}x{w}",
        "dtype": dtype,
        "cpu_lowering": lowering if device.platform == "cpu" else None,
        "backbone": args.backbone,
        "trained_params_m": ours["trained"] / 1e6,
        "jax_train_img_s": b / ours["step_s"],
        "jax_infer_img_s": b / ours["infer_s"],
        "jax_compile_s": ours["compile_s"],
        "step_gflop": ours["flops"] / 1e9,
        "jax_achieved_tflop_s": ours["flops"] / ours["step_s"] / 1e12,
    }
    if peak:
        row["jax_mfu"] = ours["flops"] / ours["step_s"] / (peak * 1e12)
    if peer:
        row["peer_train_img_s"] = b / peer["step_s"]
        row["peer_infer_img_s"] = b / peer["infer_s"]
        row["train_ratio"] = peer["step_s"] / ours["step_s"]
        row["infer_ratio"] = peer["infer_s"] / ours["infer_s"]
        if peak:
            row["peer_mfu"] = ours["flops"] / peer["step_s"] / (peak * 1e12)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    print(
        f"{b}x{h}x{w} {dtype} ({row['cpu_lowering']}, backbone {args.backbone}, "
        f"{row['trained_params_m']:.1f} M trained): train jaxvision "
        + f"{row['jax_train_img_s']:.2f} img/s"
        + (f" vs HF {row['peer_train_img_s']:.2f} (x{row['train_ratio']:.2f})" if peer else "")
        + f"; inference {row['jax_infer_img_s']:.2f}"
        + (f" vs {row['peer_infer_img_s']:.2f} (x{row['infer_ratio']:.2f})" if peer else "")
        + f"; compile {row['jax_compile_s']:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
