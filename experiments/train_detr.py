"""Trains DETR end to end, evaluates COCO AP with pycocotools, draws what it sees.

The default preset trains a small DETR on the built-in "shapes" dataset on a CPU, no
download needed::

    python experiments/train_detr.py

The official DETR-R50 COCO recipe (AdamW 1e-4, backbone 1e-5, weight decay 1e-4, clip
0.1, batch 64, 500 epochs) is a preset for GPUs, TPUs or many hosts (no augmentation or
pretrained backbone yet, see docs/main_job.md)::

    python experiments/train_detr.py --preset coco_r50 --coco-dir /data/coco

Every local device is used (data parallel over a one-axis mesh); for several processes
start it through the launcher (``python -m jaxvision.launch --nproc N ...``) or let JAX
discover them on TPU pods and clusters (``--distributed``). Re-running the same command
resumes from the newest intact checkpoint in ``--workdir``; with the same seed on the
same machine and versions it ends where an uninterrupted run ends. The bookkeeping is
``jaxvision.train`` (docs/train.md); the last line printed is the summary as JSON.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import detr_figures
import detr_task
import jax
from detr_config import PRESETS, Config
from flax import nnx
from tqdm import tqdm

from jaxvision import models, parallel, train


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="shapes", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--coco-dir", default=None, help="COCO root (preset coco_r50)")
    parser.add_argument("--workdir", default=None, help="default: runs/<preset>-seed<seed>")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a Config field, checked against its type",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start at step 0; refuses if the workdir holds a run"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --fresh: move the workdir's run aside (never deleted)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume even though the configuration differs from the saved one",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run that JAX discovers (TPU pods, SLURM)",
    )
    args = parser.parse_args(argv)
    cfg = PRESETS[args.preset]()
    shortcuts = [
        f"{key}={getattr(args, key)}"
        for key in ("seed", "steps", "batch_size", "coco_dir")
        if getattr(args, key) is not None
    ]
    return train.override(cfg, [*args.set, *shortcuts]), args


def make_loss_fn(cfg: Config, graphdef: Any, num_classes: int) -> Any:
    """The data-parallel step's loss: DETR's set criterion on the model in training mode."""

    def loss_fn(params, model_state, batch, rng, axis_name):
        model = nnx.merge(graphdef, params, model_state, copy=True)
        model.train()
        outputs = model(detr_task.normalise(batch["images"]), batch["pixel_mask"])
        targets = {k: batch[k] for k in ("labels", "boxes", "mask")}
        loss, metrics = models.detr_loss(
            outputs,
            targets,
            num_classes=num_classes,
            axis_name=axis_name,
            query_groups=model.config.num_query_groups,
            **cfg.loss_kwargs,
        )
        _, _, new_model_state = nnx.split(model, nnx.Param, ...)
        return loss, (nnx.to_pure_dict(new_model_state), metrics)

    return loss_fn


def report(
    cfg: Config,
    workdir: Path,
    writer: train.MetricsWriter,
    stats: dict[str, float],
    first: Any,
    timer: train.Timer,
    class_names: tuple[str, ...],
    lead: bool,
) -> dict[str, Any]:
    """Draws the curves and the predictions; returns the run's summary dict."""
    curve, grid = workdir / "curves.png", workdir / "predictions.png"
    if lead:
        evals = [r for r in writer.rows if "AP" in r]
        title = f"DETR on {cfg.name}, seed {cfg.seed}"
        detr_figures.plot_curves(
            *writer.series("loss"), [r["step"] for r in evals], evals, curve, title=title
        )
        detr_figures.draw_first_batch(first, class_names, grid, score_threshold=cfg.score_threshold)
    step_s = timer.median("step")
    sections = ("prepare", "compile", "data", "step", "eval", "checkpoint")
    return {
        **{k: round(stats[k], 4) for k in ("AP", "AP50", "AP75", "AR100")},
        "minutes": round(timer.elapsed() / 60, 2),
        "cpu_minutes": round(time.process_time() / 60, 2),  # of the process, all threads
        "preset": cfg.name,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "step_s": round(step_s, 4),  # median wall time of one step
        "step_cpu_s": round(timer.cpu("step") / max(1, timer.count("step")), 4),
        "images_per_s": round(cfg.batch_size / step_s, 1),
        **{f"{k}_s": round(timer.total(k), 1) for k in sections if k != "step"},
        "train_s": round(timer.total("step"), 1),  # all steps after the first
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "workdir": str(workdir),
        "curve": str(curve),
        "predictions": str(grid),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    timer = train.Timer()
    cfg, args = parse_args(argv)
    if args.distributed:
        jax.distributed.initialize()
    else:
        parallel.initialize()  # a no-op unless started by `python -m jaxvision.launch`
    lead = jax.process_index() == 0
    log = print if lead else (lambda *a, **k: None)
    workdir = args.workdir or f"runs/{cfg.name}-seed{cfg.seed}"
    options = {"overwrite": args.overwrite, "allow_config_change": args.allow_config_change}
    with train.Run.open(workdir, cfg, fresh=args.fresh, lead=lead, **options) as run:
        for line in run.config_changes:
            log(f"configuration changed on resume: {line}")
        mesh = parallel.make_mesh()
        log(
            f"preset {cfg.name}: {jax.device_count()} x {jax.devices()[0].platform} device(s), "
            f"{jax.process_count()} process(es), workdir {run.workdir}"
        )

        # --------------------------------------------------------------- data, model
        with timer("prepare"):
            d = detr_task.load_data(cfg, run.workdir)
            run.check_class_names(d.class_names, lead=lead)
            val = detr_task.val_batches(cfg, d.val)
            num_classes = len(d.class_names)
            graphdef, state, optimizer = detr_task.init_state(cfg, num_classes, mesh)
        step_fn = parallel.data_parallel_step(
            make_loss_fn(cfg, graphdef, num_classes), optimizer, mesh
        )
        predict = detr_task.make_predict(graphdef)
        rng = jax.random.key(cfg.seed)
        num_params = sum(x.size for x in jax.tree.leaves(state.params))
        log(
            f"data: {len(d.val)} held-out images, {num_classes} classes; model {cfg.model}: "
            f"{num_params / 1e6:.2f} M parameters; batch {cfg.batch_size}, {cfg.steps} steps"
        )

        def evaluate(state: parallel.TrainState) -> tuple[dict[str, float], Any]:
            with timer("eval"):
                bound = functools.partial(predict, state.params, state.model_state)
                return train.evaluate_detection(
                    bound, d.val, val(), mesh=mesh, class_names=d.class_names
                )

        # --------------------------------------------------------------- resume
        ckpt = parallel.CheckpointManager(run.workdir / "checkpoints", max_to_keep=2)
        start = 0
        if run.resumable and ckpt.latest_step() is not None:
            restored = ckpt.restore(state, rng=rng, fallback=True, log=log)
            state, start = restored.state, restored.step
            log(f"resumed from the checkpoint of step {start}")
        resume_step = start if run.resumable else None
        writer = train.MetricsWriter(run.workdir / "metrics.jsonl", resume_step=resume_step,
                                     enabled=lead)  # fmt: skip

        # --------------------------------------------------------------- train
        batches = detr_task.train_batches(cfg, d, mesh, start)
        bar = tqdm(total=cfg.steps, initial=start, disable=not lead, mininterval=2.0,
                   unit="step", dynamic_ncols=True, file=sys.stdout)  # fmt: skip
        stats, first = None, None
        for i in range(start, cfg.steps):
            done = i + 1
            with timer("data"):
                batch = next(batches)
            with timer("compile" if i == start else "step"):
                state, metrics = step_fn(state, batch, jax.random.fold_in(rng, i))
                values = train.check_finite(done, metrics)  # waits for the step
            bar.update(1)
            if train.every(done, cfg.log_every, total=cfg.steps):
                writer.write(done, **values)
                bar.set_postfix(loss=f"{values['loss']:.3f}", ce=f"{values['loss_ce']:.3f}")
            if train.every(done, cfg.eval_every, total=cfg.steps):
                stats, first = evaluate(state)
                writer.write_dict(done, stats)
                bar.write(f"step {done}: AP {stats['AP']:.3f}  AP50 {stats['AP50']:.3f}")
            if train.every(done, cfg.checkpoint_every, total=cfg.steps):
                with timer("checkpoint"):
                    ckpt.save(done, state, rng=rng, data_state={"batches": done}, force=True)
        bar.close()
        ckpt.close()
        if stats is None:  # resumed at the last step: score the final weights again
            stats, first = evaluate(state)

        # --------------------------------------------------------------- report
        summary = report(cfg, run.workdir, writer, stats, first, timer, d.class_names, lead)
        summary.update(resumed_from=start, params=int(num_params))
    if lead:
        train.print_summary(summary)
    return summary


if __name__ == "__main__":
    errors = (parallel.CheckpointError, parallel.WorkdirLockError)
    raise SystemExit(train.run_cli(main, errors=errors))
