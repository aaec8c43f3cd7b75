"""Scores a DETR checkpoint with COCO AP (pycocotools) on any COCO-format folder.

    python experiments/evaluate_detr.py --workdir runs/shapes-seed0 \\
        --annotations runs/shapes-seed0/shapes_val/annotations.json \\
        --images runs/shapes-seed0/shapes_val/images

``--workdir`` is a run of ``experiments/train_detr.py``: its ``config.json`` rebuilds the
model, its ``class_names.json`` names the trained classes, its ``checkpoints/`` hold the
weights (``--step`` picks one, default the latest; each is verified by its checksums).
The folder's categories are matched to the trained classes by name, in any order; other
names are refused. The workdir is only read: nothing is created in it, and it may be
read while a run trains there. Prints a table and, last, the metrics as one JSON object.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

import detr_figures
import detr_task
import jax
from detr_config import Config

from jaxvision import data, parallel, train


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a train_detr.py run folder")
    parser.add_argument("--annotations", required=True, help="COCO annotation JSON")
    parser.add_argument("--images", required=True, help="folder of the images it names")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (latest)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--predictions", default=None, help="also draw a PNG grid here")
    args = parser.parse_args(argv)
    timer = train.Timer()
    parallel.initialize()
    cfg, class_names = train.Run.read(args.workdir, Config)
    if args.batch_size:
        cfg = train.override(cfg, [f"eval_batch_size={args.batch_size}"])
    coco = data.read_coco_detection(args.annotations, args.images)
    train.category_ids_by_name(class_names, coco)  # refuse other categories before any work
    mesh = parallel.make_mesh()
    graphdef, state, _ = detr_task.init_state(cfg, len(class_names), mesh)
    checkpoints = Path(args.workdir) / "checkpoints"
    with parallel.CheckpointManager(checkpoints, read_only=True) as ckpt:
        restored = ckpt.restore(state, step=args.step)
    predict = functools.partial(
        detr_task.make_predict(graphdef), restored.state.params, restored.state.model_state
    )
    with timer("eval"):
        stats, first = train.evaluate_detection(
            predict, coco, detr_task.val_batches(cfg, coco)(), mesh=mesh, class_names=class_names
        )
    if args.predictions and jax.process_index() == 0:
        detr_figures.draw_first_batch(
            first, class_names, args.predictions, score_threshold=cfg.score_threshold
        )
    summary = {
        **{k: round(v, 4) for k, v in stats.items()},
        "step": restored.step,
        "images": len(coco),
        "eval_s": round(timer.total("eval"), 1),
        "minutes": round(timer.elapsed() / 60, 2),
    }
    if jax.process_index() == 0:
        train.print_summary(summary)
    return summary


if __name__ == "__main__":
    errors = (parallel.CheckpointError, data.CocoFormatError)
    raise SystemExit(train.run_cli(main, errors=errors))
