"""Scores a DETR checkpoint with COCO AP (pycocotools) on any COCO-format folder.

    python experiments/evaluate_detr.py --workdir runs/shapes-seed0 \\
        --annotations runs/shapes-seed0/shapes_val/annotations.json \\
        --images runs/shapes-seed0/shapes_val/images

``--workdir`` is a run of ``experiments/train_detr.py`` (its ``config.json`` rebuilds the
model, its ``checkpoints/`` hold the weights; ``--step`` picks one, default the latest).
The folder's categories, in file order, must be the classes the model was trained on.
Prints a table and, last, the metrics as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax

from jaxvision import data, parallel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_detr  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a train_detr.py run folder")
    parser.add_argument("--annotations", required=True, help="COCO annotation JSON")
    parser.add_argument("--images", required=True, help="folder of the images it names")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (latest)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--predictions", default=None, help="also draw a PNG grid here")
    args = parser.parse_args(argv)
    t0 = time.time()
    parallel.initialize()
    workdir = Path(args.workdir)
    cfg = train_detr.load_config(workdir)
    if args.batch_size:
        cfg.eval_batch_size = args.batch_size
    coco = data.read_coco_detection(args.annotations, args.images)
    mesh = parallel.make_mesh()
    graphdef, state, _ = train_detr.init_state(cfg, coco.num_classes, mesh)
    ckpt = parallel.CheckpointManager(workdir / "checkpoints")
    restored = ckpt.restore(state, step=args.step)
    ckpt.close()
    max_boxes = max(cfg.max_boxes, max((len(lab) for lab in coco.labels), default=1))
    d = train_detr.Data(coco.class_names, None, None, coco)

    def batches():
        return data.coco_batches(
            coco, cfg.eval_batch_size, max_boxes=max_boxes, buckets=cfg.buckets
        )

    predict = train_detr.make_predict(graphdef, mesh)
    stats, first = train_detr.evaluate(cfg, predict, restored.state, d, mesh, batches)
    if args.predictions and jax.process_index() == 0:
        train_detr.draw_first_batch(first, coco.class_names, args.predictions, cfg)
    result = {
        **{k: round(v, 4) for k, v in stats.items()},
        "step": restored.step,
        "images": len(coco),
        "minutes": round((time.time() - t0) / 60, 2),
    }
    if jax.process_index() == 0:
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"):
            print(f"{key:<6} {stats[key]:.3f}")
        print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
