"""Where the main job's step time goes: detr_tiny on a shapes batch, by component.

Times, jitted separately on the same batch of the ``shapes`` preset (batch 32, 64x64,
10 queries): the forward pass in training mode; the forward pass and DETR's criterion
(``models.detr_loss``, which matches every decoder layer); the criterion alone on fixed
outputs; and the whole training step (forward, criterion, backward, clipping, AdamW)
through ``parallel.data_parallel_step``, as ``experiments/train_detr.py`` runs it. Medians
of wall and process-CPU time per call over ``--repeats`` calls after two warm-up calls.
There is no peer here: this is a profile of jaxvision's own job (the peer comparison of
the DETR step is ``detr_step.py``).

    python experiments/bench/main_job.py --repeats 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import detr_config  # noqa: E402
import detr_task  # noqa: E402

from jaxvision import data, models, parallel  # noqa: E402


def _time(fn, repeats: int) -> dict[str, float]:
    for _ in range(2):
        jax.block_until_ready(fn())
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--groups", type=int, default=None, help="num_query_groups (default: the preset's)"
    )
    args = parser.parse_args()
    cfg = detr_config.preset_shapes()
    if args.groups is not None:
        cfg.model_kwargs = {**cfg.model_kwargs, "num_query_groups": args.groups}
    groups = cfg.model_kwargs.get("num_query_groups", 1)
    ds = data.shapes_dataset(cfg.batch_size, seed=0, image_size=cfg.image_size)
    arrays = data.detection_targets(ds)
    mesh = parallel.make_mesh()
    graphdef, state, optimizer = detr_task.init_state(cfg, ds.num_classes, mesh)
    host = {k: arrays[k] for k in detr_task.TARGET_KEYS}
    batch = jax.tree.map(jax.numpy.asarray, host)  # plain arrays for the parts
    sharded = parallel.shard_batch(host, mesh)  # the step's input, as in training
    targets = {k: batch[k] for k in ("labels", "boxes", "mask")}
    rng = jax.random.key(0)

    def forward(params, model_state, batch):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.train()
        return model(detr_task.normalise(batch["images"]), batch["pixel_mask"])

    def criterion(outputs):
        return models.detr_loss(
            outputs, targets, num_classes=ds.num_classes, query_groups=groups, **cfg.loss_kwargs
        )

    fwd = jax.jit(forward)
    fwd_loss = jax.jit(lambda p, s, b: criterion(forward(p, s, b))[0])
    outputs = fwd(state.params, state.model_state, batch)
    loss_only = jax.jit(lambda o: criterion(o)[0])
    import train_detr

    step = parallel.data_parallel_step(
        train_detr.make_loss_fn(cfg, graphdef, ds.num_classes), optimizer, mesh
    )
    carry = [state]  # the step may donate its input state (on accelerators)

    def train_step():
        carry[0], metrics = step(carry[0], sharded, rng)
        return metrics

    rows = {
        "forward (train mode)": lambda: fwd(state.params, state.model_state, batch),
        f"criterion alone (matching + losses, 2 decoder layers x {groups} groups)": lambda: (
            loss_only(outputs)
        ),
        "forward + criterion": lambda: fwd_loss(state.params, state.model_state, batch),
        "training step (+ backward, clip, AdamW)": train_step,
    }
    results = {}  # the step runs last: it may donate the state the other rows read
    for name, fn in rows.items():
        r = results[name] = _time(fn, args.repeats)
        print(f"{name:<55} {r['wall_ms']:8.1f} ms wall {r['cpu_ms']:8.1f} ms CPU")
    print(
        json.dumps(
            {"jax": jax.__version__, "devices": jax.device_count(), "groups": groups, **results}
        )
    )


if __name__ == "__main__":
    main()
