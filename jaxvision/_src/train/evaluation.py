"""One evaluation loop for training and evaluation scripts: predict batches, score them.

A training script evaluates its held-out split with :func:`evaluate_detection` every
``eval_every`` steps; an evaluation script calls the same function on a restored
checkpoint, so the two cannot score differently. Categories are matched by name
(:func:`category_ids_by_name`), never by position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxvision._src.data.coco import CocoDetection
from jaxvision._src.data.coco_eval import coco_evaluate, detections_to_coco
from jaxvision._src.export import export
from jaxvision._src.parallel.mesh import process_batch_slice, shard_batch
from jaxvision._src.train.errors import RunMismatchError

Batch = dict[str, np.ndarray]
Predict = Callable[..., dict[str, jax.Array]]


def to_host(x: jax.Array) -> np.ndarray:
    """A global array as one NumPy array on every process."""
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


@export("train.predict_batches")
def predict_batches(
    predict: Predict, batches: Iterable[Batch], *, mesh: Mesh, inputs: Sequence[str]
) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
    """Runs ``predict`` over host batches sharded on ``mesh``; yields (batch, predictions).

    Args:
      predict: ``predict(**{k: batch[k] for k in inputs}) -> {name: [B, ...]}``, jitted;
        bind the parameters first (``functools.partial(predict, state.params, ...)``).
      batches: host (NumPy) batches of the global batch size, on every process.
      mesh: the data-parallel mesh; each process puts its own rows on its devices.
      inputs: the batch keys ``predict`` takes.

    Yields:
      The host batch and the predictions as NumPy arrays ``[B, ...]`` on every process.
    """
    for batch in batches:
        rows = process_batch_slice(len(batch[inputs[0]]), mesh)
        sharded = shard_batch({k: batch[k][rows] for k in inputs}, mesh)
        out = predict(**sharded)
        yield batch, {k: to_host(v) for k, v in out.items()}


@export("train.category_ids_by_name")
def category_ids_by_name(class_names: Sequence[str], coco: CocoDetection) -> np.ndarray:
    """The COCO category id of each trained class, matched by name.

    Args:
      class_names: the ``C`` classes the model was trained on, label ``i`` = name ``i``.
      coco: the dataset to evaluate on; its category order does not matter.

    Returns:
      ``[C]`` int64 category ids, for :func:`jaxvision.data.detections_to_coco`.

    Raises:
      RunMismatchError: the dataset's category names are not the trained ones.
    """
    ids = dict(zip(coco.class_names, coco.category_ids.tolist(), strict=True))
    missing = [n for n in class_names if n not in ids]
    extra = [n for n in coco.class_names if n not in set(class_names)]
    if missing or extra:
        raise RunMismatchError(
            f"{coco.annotation_file}: categories {list(coco.class_names)} are not the trained "
            f"classes {list(class_names)} (missing {missing}, unknown {extra})"
        )
    return np.asarray([ids[n] for n in class_names], np.int64)


@export("train.evaluate_detection")
def evaluate_detection(
    predict: Predict,
    ground_truth: CocoDetection,
    batches: Iterable[Batch],
    *,
    mesh: Mesh,
    class_names: Sequence[str],
) -> tuple[dict[str, float], tuple[Batch, dict[str, np.ndarray]]]:
    """COCO box AP of a detector on ``ground_truth`` (pycocotools), batch by batch.

    Args:
      predict: ``predict(images, pixel_mask, sizes) -> {"boxes": [B, Q, 4] xyxy pixels,
        "scores": [B, Q], "labels": [B, Q]}`` (e.g. ``models.detr_postprocess`` after the
        model), jitted, parameters bound.
      ground_truth: the COCO dataset the batches come from.
      batches: its batches (``data.coco_batches``), host arrays.
      mesh: the data-parallel mesh.
      class_names: the trained classes; mapped to the dataset's categories by name.

    Returns:
      ``(stats, (first_batch, first_predictions))``: the metrics of
      :func:`jaxvision.data.coco_evaluate` and the first batch with its predictions (for a
      picture).

    Raises:
      RunMismatchError: the dataset's categories are not the trained classes.
    """
    category_ids = category_ids_by_name(class_names, ground_truth)
    records, first = [], None
    for batch, dets in predict_batches(
        predict, batches, mesh=mesh, inputs=("images", "pixel_mask", "sizes")
    ):
        first = first or (batch, dets)
        records += detections_to_coco(
            batch["image_ids"],
            dets["boxes"],
            dets["scores"],
            dets["labels"],
            category_ids,
            sizes=batch["sizes"],
            valid=batch["valid"],
        )
    return coco_evaluate(ground_truth, records), first
