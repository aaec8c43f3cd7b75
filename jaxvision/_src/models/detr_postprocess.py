"""DETR post-processing: class scores and pixel boxes, with static-shape top-k and threshold.

The convention is HF transformers' ``DetrImageProcessor.post_process_object_detection``
(and the official ``PostProcess``): softmax over ``C + 1`` classes, drop the no-object
column, take the max as score and label, convert ``cxcywh`` to ``xyxy`` and scale by the
image size. HF then drops low scores, giving each image its own length; here every output
keeps a static shape, and selection is a sort (``detr_top_k``) or a mask
(``detr_score_threshold``).

NaN rule (the same as ``boxes.nms`` and ``data.detections_to_coco``): a query with a NaN
logit gets score NaN and label ``-1`` (no class); NaN scores rank below every number,
``-inf`` included, in ``detr_top_k``; they never pass ``detr_score_threshold``; and
``detections_to_coco`` leaves them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxvision._src.boxes.formats import box_convert
from jaxvision._src.export import export


@export("models.Detections")
class Detections(TypedDict):
    """Detections of a batch, as ``detr_postprocess`` returns them (a plain ``dict``).

    Every array leads with ``[B, Q]``: ``scores`` float32, ``labels`` int32, ``boxes``
    ``[B, Q, 4]`` ``xyxy``; ``valid`` bool is added by ``detr_score_threshold``.
    """

    scores: jax.Array
    labels: jax.Array
    boxes: jax.Array
    valid: NotRequired[jax.Array]


def _check_detections(detections: Any) -> tuple[int, int]:
    if not isinstance(detections, Mapping) or not {"scores", "labels", "boxes"} <= set(detections):
        raise TypeError("detections must be a mapping with keys 'scores', 'labels', 'boxes'")
    scores, labels, boxes = detections["scores"], detections["labels"], detections["boxes"]
    if scores.ndim != 2 or labels.shape != scores.shape or boxes.shape != (*scores.shape, 4):
        raise ValueError(
            "detections must hold scores [B, Q], labels [B, Q], boxes [B, Q, 4]; got "
            f"{tuple(scores.shape)}, {tuple(labels.shape)}, {tuple(boxes.shape)}"
        )
    return scores.shape[0], scores.shape[1]


def _nan_last_order(scores: jax.Array) -> jax.Array:
    """``[B, Q]`` -> query indices by decreasing score; ties by index, NaN last."""
    scores = jnp.asarray(scores)
    nan = jnp.isnan(scores)
    key = jnp.where(nan, 0, -scores) + 0.0  # + 0.0: -0.0 and 0.0 compare equal
    index = jnp.broadcast_to(jnp.arange(scores.shape[1], dtype=jnp.int32), scores.shape)
    return jax.lax.sort((nan.astype(jnp.int32), key, index), num_keys=3)[2]


@export("models.detr_top_k")
def detr_top_k(detections: Mapping[str, jax.Array], k: int) -> Detections:
    """Keeps the ``k`` highest-scoring detections of every image, best first.

    Ties keep the lower query index first; NaN scores rank last (below ``-inf``), as in
    ``boxes.nms``. Every array in ``detections`` whose leading dimensions are ``[B, Q]``
    is gathered (e.g. a ``valid`` mask).

    Args:
      detections: ``{"scores": [B, Q], "labels": [B, Q], "boxes": [B, Q, 4], ...}``.
      k: number to keep, ``1 <= k <= Q``.

    Returns:
      The same keys with ``Q`` replaced by ``k``.
    """
    batch, queries = _check_detections(detections)
    if not isinstance(k, int) or not 1 <= k <= queries:
        raise ValueError(f"k must be an int in [1, {queries}], got {k!r}")
    index = _nan_last_order(detections["scores"])[:, :k]  # [B, k]
    out = {}
    for key, value in detections.items():
        if value.shape[:2] != (batch, queries):
            raise ValueError(f"detections[{key!r}] must lead with [B, Q], got {value.shape}")
        idx = index.reshape(index.shape + (1,) * (value.ndim - 2))
        out[key] = jnp.take_along_axis(value, idx, axis=1)
    return out


@export("models.detr_score_threshold")
def detr_score_threshold(detections: Mapping[str, jax.Array], threshold: float) -> Detections:
    """Marks detections scoring strictly above ``threshold`` (HF's ``s > threshold``).

    Shapes stay static: nothing is dropped; a boolean ``valid`` mask is added (and-ed with
    an existing one) and the scores of invalid detections are set to 0.

    Args:
      detections: ``{"scores": [B, Q], "labels": [B, Q], "boxes": [B, Q, 4], ...}``.
      threshold: score threshold.

    Returns:
      ``detections`` with ``valid: [B, Q]`` bool and masked ``scores``.
    """
    _check_detections(detections)
    valid = detections["scores"] > threshold
    if "valid" in detections:
        valid = valid & detections["valid"]
    out = dict(detections)
    out["valid"] = valid
    out["scores"] = jnp.where(valid, detections["scores"], 0.0)
    return out


@export("models.detr_postprocess")
def detr_postprocess(
    outputs: Mapping[str, Any],
    image_sizes: ArrayLike | None,
    *,
    top_k: int | None = None,
) -> Detections:
    """Turns DETR outputs into scored ``xyxy`` boxes in pixels (Carion et al., ECCV 2020).

    ``scores, labels = max(softmax(logits)[..., :-1])``: the no-object column (last) is
    dropped before the max, so labels lie in ``[0, C)``. Boxes are converted from
    normalised ``cxcywh`` to ``xyxy`` and multiplied by ``(w, h, w, h)``; they are not
    clipped to the image (as HF and the official code).

    Args:
      outputs: ``{"logits": [B, Q, C+1], "boxes": [B, Q, 4] cxcywh in [0, 1], ...}``
        (other keys such as ``aux`` are ignored).
      image_sizes: ``[B, 2]`` ``(height, width)`` of each original image, or ``None`` to
        keep normalised coordinates.
      top_k: if given, keep only the ``top_k`` best detections per image (``detr_top_k``).

    Returns:
      ``{"scores": [B, Q] float32, "labels": [B, Q] int32, "boxes": [B, Q, 4] xyxy}``, with
      ``Q`` replaced by ``top_k`` when given. A query with a NaN logit has score NaN and
      label ``-1`` (see the module's NaN rule).
    """
    if not isinstance(outputs, Mapping) or "logits" not in outputs or "boxes" not in outputs:
        raise TypeError("outputs must be a mapping with keys 'logits' and 'boxes'")
    logits, boxes = outputs["logits"], outputs["boxes"]
    if logits.ndim != 3 or logits.shape[-1] < 2:
        raise ValueError(f"outputs['logits'] must be [B, Q, C+1] with C >= 1, got {logits.shape}")
    if boxes.shape != (*logits.shape[:2], 4):
        raise ValueError(
            f"outputs['boxes'] must be [B, Q, 4] = {(*logits.shape[:2], 4)}, got {boxes.shape}"
        )
    logits = logits.astype(jnp.float32)
    prob = jax.nn.softmax(logits, axis=-1)[..., :-1]
    # NaN where any logit of the query is NaN, flagged explicitly: XLA's CPU max reduction
    # skips NaN (a [2, 100, 92] batch gave score -inf, label 0 for a query holding one).
    nan_query = jnp.any(jnp.isnan(logits), axis=-1)
    scores = jnp.where(nan_query, jnp.nan, prob.max(-1))
    labels = jnp.where(nan_query, -1, prob.argmax(-1)).astype(jnp.int32)
    xyxy = box_convert(boxes.astype(jnp.float32), "cxcywh", "xyxy")
    if image_sizes is not None:
        image_sizes = jnp.asarray(image_sizes)
        if image_sizes.shape != (logits.shape[0], 2):
            raise ValueError(
                f"image_sizes must be [B, 2] = {(logits.shape[0], 2)} (height, width), "
                f"got {image_sizes.shape}"
            )
        h, w = image_sizes[:, 0], image_sizes[:, 1]
        xyxy = xyxy * jnp.stack([w, h, w, h], axis=-1).astype(jnp.float32)[:, None, :]
    detections = {"scores": scores, "labels": labels, "boxes": xyxy}
    if top_k is not None:
        detections = detr_top_k(detections, top_k)
    return detections
