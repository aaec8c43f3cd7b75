"""Face recognition: Partial FC memory and speed, and margin loss against insightface's.

    python experiments/bench/face.py [--classes 65536] [--dim 128] [--batch 256] [--repeats 5]

1. Memory: bytes per device of the classifier's centres, their gradients and SGD
   momentum (insightface's optimizer for the head) for 1M identities x 512-d on 8 devices,
   read from the shardings of the train state (``jax.eval_shape``, nothing allocated):
   the data-parallel full classifier (replicated) against Partial FC (``P("model")``).
2. Speed: samples/s of one ``parallel.data_parallel_step`` with each classifier at a size
   the shared CPU holds (``--classes`` x ``--dim``, 8 simulated devices, a linear
   "backbone"). Simulated devices share the 2 cores, so this compares work and copies
   (the data-parallel step all-reduces a ``C x D`` gradient), not interconnects.
3. Margin loss forward + backward on ``[batch, classes]`` cosines: ``losses.
   margin_softmax_loss`` (jit) against a PyTorch transcription of insightface's
   ``CombinedMarginLoss`` + cross-entropy (arcface_torch/losses.py) on 1 and 2 threads
   (the ratio uses torch's faster one).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxvision import losses, ops, parallel  # noqa: E402
from jaxvision._src.parallel.step import _state_specs  # noqa: E402

FEATURES = 64


# ---------------------------------------------------------------- memory from shardings
def per_device_bytes(tree, specs, mesh):
    """Bytes one device holds of each leaf, from its NamedSharding's shard shape."""
    def one(x, spec):
        shard = jax.sharding.NamedSharding(mesh, spec).shard_shape(x.shape)
        return math.prod(shard) * x.dtype.itemsize

    return sum(jax.tree.leaves(jax.tree.map(one, tree, specs)))


def classifier_memory(num_classes, dim, devices=8):
    opt = optax.sgd(0.1, momentum=0.9)
    rows = {"dp": num_classes, "pfc": devices * parallel.num_local_classes(num_classes, devices)}
    out = {}
    for name, mesh, spec in [
        ("dp", jax.make_mesh((devices,), ("data",)), P()),
        ("pfc", jax.make_mesh((1, devices), ("data", "model")), P("model", None)),
    ]:
        params = {"centres": jax.ShapeDtypeStruct((rows[name], dim), jnp.float32)}
        state = jax.eval_shape(lambda p: parallel.TrainState.create(p, opt), params)
        specs = _state_specs(state, opt, {"centres": spec}, mesh)
        out[name] = {
            "centres": per_device_bytes(state.params, specs.params, mesh),
            "gradients": per_device_bytes(state.params, specs.params, mesh),
            "momentum": per_device_bytes(state.opt_state, specs.opt_state, mesh),
        }
    return out


# ---------------------------------------------------------------- samples/s of the step
def make_step(kind, num_classes, dim, devices=8):
    opt = optax.sgd(0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    if kind == "dp":
        mesh = parallel.make_mesh(devices)
        rows, specs = num_classes, None

        def loss_fn(p, ms, b, key, axis_name):
            cos = ops.pairwise_cosine(b["x"] @ p["backbone"], p["centres"])
            return losses.margin_softmax_loss(cos, b["y"]), (ms, {})
    else:
        mesh = jax.make_mesh((1, devices), ("data", "model"),
                             axis_types=(jax.sharding.AxisType.Explicit,) * 2)
        rows = devices * parallel.num_local_classes(num_classes, devices)
        specs = {"backbone": P(), "centres": P("model", None)}

        def loss_fn(p, ms, b, key, axis_name):
            loss = parallel.partial_fc_loss(b["x"] @ p["backbone"], b["y"], p["centres"],
                                            num_classes=num_classes, gather=False)
            return loss, (ms, {})

    params = {
        "backbone": jnp.asarray(rng.normal(size=(FEATURES, dim)) / 8, jnp.float32),
        "centres": jnp.asarray(rng.normal(size=(rows, dim)), jnp.float32),
    }
    state = parallel.TrainState.create(params, opt)
    return parallel.data_parallel_step(loss_fn, opt, mesh, param_specs=specs), state


def samples_per_second(kind, num_classes, dim, batch, repeats):
    step, state = make_step(kind, num_classes, dim)
    rng = np.random.default_rng(1)
    data = {"x": jnp.asarray(rng.normal(size=(batch, FEATURES)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)}
    key = jax.random.key(0)
    state, m = step(state, data, key)
    jax.block_until_ready(m)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, m = step(state, data, key)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times)), float(m["loss"])


# ---------------------------------------------------------------- margin loss vs torch
def insightface_loss(torch, logits, labels, s=64.0, m1=1.0, m2=0.5, m3=0.0):
    """insightface arcface_torch CombinedMarginLoss.forward, then cross-entropy."""
    index_positive = torch.where(labels != -1)[0]
    target_logit = logits[index_positive, labels[index_positive].view(-1)]
    if m1 == 1.0 and m3 == 0.0:
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            final_target_logit = target_logit + m2
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits.cos_()
        logits = logits * s
    elif m3 > 0:
        final_target_logit = target_logit - m3
        logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
        logits = logits * s
    else:
        raise ValueError("insightface supports ArcFace (m1 = 1, m3 = 0) or m3 > 0 only")
    return torch.nn.functional.cross_entropy(logits, labels)


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def margin_times(torch, cos, labels, opts, repeats):
    """Median seconds of ours (true and detached gradients) and insightface's (1, 2 threads)."""
    c_j, y_j = jnp.asarray(cos), jnp.asarray(labels)
    out = []
    for detach in (False, True):
        fn = jax.jit(jax.value_and_grad(
            lambda c, y, d=detach: losses.margin_softmax_loss(c, y, detach_margin=d, **opts)
        ))
        out.append(median_time(lambda f=fn: jax.block_until_ready(f(c_j, y_j)), repeats))
    y_t = torch.tensor(labels)

    def peer():
        c_t = torch.tensor(cos, requires_grad=True)
        insightface_loss(torch, c_t * 1.0, y_t, **opts).backward()
        return c_t.grad

    # Under a loaded machine torch's 2 threads can be slower than one: both are shown.
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out.append(median_time(peer, repeats))
    return out


def margin_speed(batch, num_classes, repeats):
    import torch

    rng = np.random.default_rng(2)
    cos = rng.uniform(-1, 1, (batch, num_classes)).astype(np.float32)
    labels = rng.integers(0, num_classes, batch)
    presets = [("arcface", {"m2": 0.5}), ("cosface", {"m2": 0.0, "m3": 0.4})]
    return [(name, *margin_times(torch, cos, labels, o, repeats)) for name, o in presets]


def main():
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=65536)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--loss-classes", type=int, default=100_000)
    parser.add_argument("--loss-batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print("== classifier memory per device, 1M identities x 512-d float32 on 8 devices ==")
    mem = classifier_memory(1_000_000, 512)
    for name, label in [("dp", "data-parallel (replicated)"), ("pfc", "Partial FC (sharded)")]:
        parts = mem[name]
        total = sum(parts.values())
        print(f"{label:28s} " + "  ".join(f"{k} {v / 2**20:8.1f} MiB" for k, v in parts.items())
              + f"  total {total / 2**30:.2f} GiB")
    saved = sum(mem["dp"].values()) - sum(mem["pfc"].values())
    print(f"saved per device: {saved / 2**30:.2f} GiB "
          f"({sum(mem['dp'].values()) / sum(mem['pfc'].values()):.1f}x less)")

    print(f"\n== train step samples/s, {args.classes} classes x {args.dim}-d, "
          f"batch {args.batch}, 8 simulated CPU devices ==")
    dp, dp_loss = samples_per_second("dp", args.classes, args.dim, args.batch, args.repeats)
    pfc, pfc_loss = samples_per_second("pfc", args.classes, args.dim, args.batch, args.repeats)
    print(f"data-parallel {dp:9.1f} samples/s (loss {dp_loss:.4f})")
    print(f"Partial FC    {pfc:9.1f} samples/s (loss {pfc_loss:.4f})  ratio {pfc / dp:.2f}x")

    print(f"\n== margin loss fwd+bwd, [{args.loss_batch}, {args.loss_classes}] cosines, "
          "2 threads, median ms ==")
    print(f"{'loss':8s} {'jaxvision':>10s} {'detached':>10s} {'torch 1 thr':>12s} "
          f"{'torch 2 thr':>12s} {'best torch / jaxvision':>23s}")
    for name, ours, ours_d, t1, t2 in margin_speed(args.loss_batch, args.loss_classes,
                                                   args.repeats):
        print(f"{name:8s} {ours * 1e3:10.2f} {ours_d * 1e3:10.2f} {t1 * 1e3:12.2f} "
              f"{t2 * 1e3:12.2f} {min(t1, t2) / ours:22.2f}x")


if __name__ == "__main__":
    main()
