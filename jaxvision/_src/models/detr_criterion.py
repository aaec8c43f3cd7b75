"""The DETR set criterion: Hungarian matching, then CE + L1 + GIoU on the matched pairs.

Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020
(arXiv 2005.12872), section 3.1 and appendix A.2.

Conventions (those of the official code and of HF transformers' ``DetrLoss``):

- the class head has ``num_classes + 1`` outputs; the no-object class is the LAST index;
- boxes are ``cxcywh`` normalised to ``[0, 1]``; GIoU is computed on ``xyxy``;
- matching cost ``cost_class * (-prob[label]) + cost_bbox * L1 + cost_giou * (-GIoU)``;
- loss ``class_weight * CE + bbox_weight * L1 + giou_weight * (1 - GIoU)``, where CE is the
  weighted mean over all queries (weight ``eos_coef`` on the no-object class, 1 elsewhere,
  as torch's ``cross_entropy(weight=...)``) and the box terms are sums over matched pairs
  divided by the number of target boxes (clamped to at least 1);
- auxiliary decoder outputs get the same loss, each layer with its own matching.

Batches are static-shaped: targets are padded to ``T`` slots with a boolean ``mask``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxvision._src.boxes.iou import box_giou
from jaxvision._src.export import export
from jaxvision._src.losses.iou_losses import giou_loss
from jaxvision._src.matching.hungarian import hungarian_match
from jaxvision._src.matching.matcher import Matcher


def _check_array(x: Any, name: str, ndim: int, last: int | None = None) -> jax.Array:
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    if x.ndim != ndim or (last is not None and x.shape[-1] != last):
        want = f"[{', '.join(['...'] * (ndim - 1) + [str(last) if last else '...'])}]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    return x


def _check_prediction(
    pred: Any, name: str, num_classes: int, batch: int | None, queries: int | None
) -> tuple[jax.Array, jax.Array]:
    if not isinstance(pred, Mapping) or "logits" not in pred or "boxes" not in pred:
        raise TypeError(f"{name} must be a mapping with keys 'logits' and 'boxes'")
    logits = _check_array(pred["logits"], f"{name}['logits']", 3)
    boxes = _check_array(pred["boxes"], f"{name}['boxes']", 3, 4)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"{name}['logits'] must be floating point, got {logits.dtype}")
    if logits.shape[-1] != num_classes + 1:
        raise ValueError(
            f"{name}['logits'] must have num_classes + 1 = {num_classes + 1} classes "
            f"(no-object last), got {logits.shape[-1]}"
        )
    if logits.shape[:2] != boxes.shape[:2]:
        raise ValueError(
            f"{name}['logits'] {tuple(logits.shape)} and {name}['boxes'] "
            f"{tuple(boxes.shape)} disagree on [batch, queries]"
        )
    if batch is not None and logits.shape[0] != batch:
        raise ValueError(f"{name} has batch size {logits.shape[0]}, the targets have {batch}")
    if queries is not None and logits.shape[1] != queries:
        raise ValueError(f"{name} has {logits.shape[1]} queries, the final layer has {queries}")
    return logits, boxes


def _check_targets(targets: Any, num_classes: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    if not isinstance(targets, Mapping) or not {"labels", "boxes", "mask"} <= set(targets):
        raise TypeError("targets must be a mapping with keys 'labels', 'boxes' and 'mask'")
    labels = _check_array(targets["labels"], "targets['labels']", 2)
    boxes = _check_array(targets["boxes"], "targets['boxes']", 3, 4)
    mask = _check_array(targets["mask"], "targets['mask']", 2)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"targets['labels'] must be integer, got {labels.dtype}")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"targets['mask'] must be bool, got {mask.dtype}")
    if not labels.shape == mask.shape == boxes.shape[:2]:
        raise ValueError(
            f"targets disagree on [batch, T]: labels {tuple(labels.shape)}, "
            f"boxes {tuple(boxes.shape)}, mask {tuple(mask.shape)}"
        )
    if not isinstance(labels, jax.core.Tracer) and not isinstance(mask, jax.core.Tracer):
        # Concrete targets are checked now; traced ones poison the loss with NaN instead.
        lab, msk = np.asarray(labels), np.asarray(mask)
        bad = msk & ((lab < 0) | (lab >= num_classes))
        if bad.any():
            raise ValueError(
                f"targets['labels'] must lie in [0, num_classes={num_classes}) where "
                f"targets['mask'] is True; got {sorted(set(lab[bad].tolist()))}"
            )
    return labels, boxes, mask


@export("models.detr_matching_costs", deprecated=("models.detr_matching_cost",))
def detr_matching_costs(
    logits: ArrayLike,
    pred_boxes: ArrayLike,
    labels: ArrayLike,
    target_boxes: ArrayLike,
    *,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> jax.Array:
    """DETR's matching cost between every query and every target slot.

    ``cost_class * (-softmax(logits)[label]) + cost_bbox * L1 + cost_giou * (-GIoU)``, the
    L1 distance summed over the four ``cxcywh`` coordinates and GIoU taken on ``xyxy``
    (Carion et al., ECCV 2020, eq. 1 and appendix A.2). The cost is finite for any finite
    boxes, degenerate ones included (GIoU of empty boxes is defined); non-finite predictions
    give non-finite entries, which jaxvision's matchers treat as a large finite cost (as
    HF's matcher does). Padded target slots get costs too; pass the mask to the matcher.

    Args:
      logits: ``[..., Q, C + 1]`` class logits, no-object last.
      pred_boxes: ``[..., Q, 4]`` predicted ``cxcywh`` boxes.
      labels: ``[..., T]`` integer target labels (out-of-range values are clipped; mask them).
      target_boxes: ``[..., T, 4]`` target ``cxcywh`` boxes.
      cost_class, cost_bbox, cost_giou: weights of the three terms.

    Returns:
      ``[..., Q, T]`` float32 costs (no gradient flows through them).
    """
    logits, pred_boxes, target_boxes = jax.lax.stop_gradient((logits, pred_boxes, target_boxes))
    prob = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    lab = jnp.clip(labels, 0, logits.shape[-1] - 1)
    # prob[..., q, labels[..., t]] -> [..., Q, T]
    index = jnp.broadcast_to(lab[..., None, :], (*prob.shape[:-1], lab.shape[-1]))
    class_cost = -jnp.take_along_axis(prob, index, axis=-1)
    pb = pred_boxes.astype(jnp.float32)
    tb = target_boxes.astype(jnp.float32)
    bbox_cost = jnp.abs(pb[..., :, None, :] - tb[..., None, :, :]).sum(-1)
    giou = box_giou(pb, tb, fmt="cxcywh")
    return cost_class * class_cost + cost_bbox * bbox_cost - cost_giou * giou


def _layer_terms(
    logits: jax.Array,
    pred_boxes: jax.Array,
    labels: jax.Array,
    target_boxes: jax.Array,
    mask: jax.Array,
    target_of_query: jax.Array,
    *,
    num_classes: int,
    eos_coef: float,
) -> dict[str, jax.Array]:
    """Per-image sums of every term for one decoder layer, given its matching.

    Shapes: logits [B, Q, C+1], pred_boxes [B, Q, 4], labels [B, T], target_boxes [B, T, 4],
    mask [B, T], target_of_query [B, Q]. Returns sums over queries, each [B].
    """
    matched = target_of_query >= 0  # [B, Q]
    slot = jnp.maximum(target_of_query, 0)
    matched_label = jnp.take_along_axis(labels, slot, axis=1)
    target_class = jnp.where(matched, matched_label, num_classes)  # [B, Q]

    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.clip(target_class, 0, num_classes)[..., None], -1)[..., 0]
    weight = jnp.where(target_class == num_classes, eos_coef, 1.0)

    # Unmatched queries are compared with a harmless unit box so that their (discarded)
    # terms and gradients stay finite whatever the padding holds.
    matched_box = jnp.take_along_axis(target_boxes, slot[..., None], axis=1).astype(jnp.float32)
    filler = jnp.asarray([0.5, 0.5, 1.0, 1.0], jnp.float32)
    tgt = jnp.where(matched[..., None], matched_box, filler)
    src = jnp.where(matched[..., None], pred_boxes.astype(jnp.float32), filler)
    l1 = jnp.where(matched, jnp.abs(src - tgt).sum(-1), 0.0)
    giou = jnp.where(
        matched,
        giou_loss(src, tgt, fmt="cxcywh", reduction="none", eps=0.0),
        0.0,
    )

    stopped = jax.lax.stop_gradient(logits)
    predicted = jnp.argmax(stopped, axis=-1)
    correct = matched & (predicted == target_class)
    num_pred = (predicted != num_classes).sum(-1)
    num_true = mask.sum(-1)
    return {
        "ce": (weight * nll).sum(-1),
        "weight": weight.sum(-1),
        "bbox": l1.sum(-1),
        "giou": giou.sum(-1),
        "correct": correct.sum(-1).astype(jnp.float32),
        "matched": matched.sum(-1).astype(jnp.float32),
        "cardinality": jnp.abs(num_pred - num_true).astype(jnp.float32),
    }


@export("models.detr_loss")
def detr_loss(
    outputs: Mapping[str, Any],
    targets: Mapping[str, jax.Array],
    *,
    num_classes: int,
    eos_coef: float = 0.1,
    class_weight: float = 1.0,
    bbox_weight: float = 5.0,
    giou_weight: float = 2.0,
    cost_class: float = 1.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
    aux_loss: bool = True,
    axis_name: str | None = None,
    matcher: Matcher | None = None,
    query_groups: int = 1,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The DETR set criterion (Carion et al., ECCV 2020): matching, then CE + L1 + GIoU.

    Each decoder layer (the final one and, with ``aux_loss``, every auxiliary one) is
    matched to the targets on its own with ``detr_matching_costs`` and ``matcher``; all
    layers are matched in one call of ``jax.vmap(matcher)``. The loss of one layer is
    ``class_weight * CE + bbox_weight * L1 + giou_weight * (1 - GIoU)``:

    - CE: cross-entropy over all ``B * Q`` queries, unmatched queries labelled no-object
      (index ``num_classes``), weighted mean with weight ``eos_coef`` on no-object, as
      torch's ``cross_entropy(weight=...)``;
    - L1 and 1 - GIoU: sums over matched pairs divided by the number of valid target boxes
      ``N`` (clamped to at least 1).

    This equals HF transformers' ``ForObjectDetectionLoss`` / the official ``SetCriterion``.

    With ``axis_name`` (inside ``shard_map`` / ``pmap``) the denominators are global:
    ``N = max(psum(n), 1)`` and the CE weight sum are summed over the axis and divided by
    the axis size, so that ``lax.pmean`` of the per-device losses (and of their gradients)
    equals the loss of the whole batch on one device. The official code normalises the box
    terms the same way (but clamps after dividing by the world size) and leaves CE a
    per-device mean.

    Degenerate input: images without targets give a finite loss (only the no-object CE);
    degenerate target boxes (zero width or height) give finite loss and gradients; if every
    CE weight is zero (``eos_coef=0`` and no targets) CE is 0. Target labels outside
    ``[0, num_classes)`` in valid slots raise a ValueError when the targets are concrete and
    make the loss NaN when they are traced (values are unknown at trace time).

    Args:
      outputs: ``{"logits": [B, Q, C+1], "boxes": [B, Q, 4] cxcywh in [0, 1],
        "aux": optional sequence of {"logits", "boxes"} for decoder layers 0..L-2}``.
      targets: ``{"labels": [B, T] int, "boxes": [B, T, 4] cxcywh, "mask": [B, T] bool}``.
      num_classes: ``C``, the number of object classes (without no-object).
      eos_coef: CE weight of the no-object class.
      class_weight, bbox_weight, giou_weight: weights of the three loss terms.
      cost_class, cost_bbox, cost_giou: weights of the matching cost terms.
      aux_loss: add the losses of ``outputs["aux"]`` (ignored when absent).
      axis_name: mapped axis over which the data is sharded, or ``None``.
      matcher: ``(costs [B, Q, T], target_mask [B, T]) -> (query_of_target [B, T],
        target_of_query [B, Q])`` with -1 where unmatched, vmappable (it is mapped over
        the decoder layers); default ``jaxvision.matching.hungarian_match`` (exact), or
        ``jaxvision.matching.greedy_match``.
      query_groups: ``G``; the ``Q`` queries of ``outputs`` are ``G`` consecutive groups
        (Group DETR, Chen et al., ICCV 2023; ``DETRConfig.num_query_groups``), each
        matched to all the targets on its own. The loss is then the mean over the groups
        of each group's loss (every group counts as a copy of the batch: ``N`` and the
        CE weights are summed over the groups), so ``G = 1`` is the plain criterion and
        the scale of the loss does not grow with ``G`` (Group DETR sums the groups).

    Returns:
      ``(loss, metrics)``: the scalar total loss and a dict with ``loss_ce``, ``loss_bbox``,
      ``loss_giou``, ``cardinality_error`` (mean absolute error of the number of
      non-no-object predictions per image, no gradient), ``class_error`` (percentage of
      matched queries whose argmax is not their target class; 0 without targets; global
      over ``axis_name``), and the same keys suffixed ``_0 .. _{L-2}`` for auxiliary layers.
      With ``axis_name`` the loss terms are per-device shares and ``cardinality_error`` a
      per-device mean: ``lax.pmean`` them for the whole-batch values.
    """
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    labels, target_boxes, mask = _check_targets(targets, int(num_classes))
    if query_groups != 1:
        outputs, (labels, target_boxes, mask) = _split_query_groups(
            outputs, (labels, target_boxes, mask), query_groups
        )
    batch = labels.shape[0]
    all_logits, all_boxes = _stacked_layers(outputs, num_classes, batch, aux_loss)
    labels = jnp.where(mask, labels, 0)
    target_of_query = _match_layers(
        all_logits,
        all_boxes,
        labels,
        target_boxes,
        mask,
        hungarian_match if matcher is None else matcher,
        cost_class=cost_class,
        cost_bbox=cost_bbox,
        cost_giou=cost_giou,
    )
    terms = jax.vmap(
        lambda lg, bx, tq: _layer_terms(
            lg,
            bx,
            labels,
            target_boxes,
            mask,
            tq,
            num_classes=num_classes,
            eos_coef=eos_coef,
        )
    )(all_logits, all_boxes, target_of_query)
    sums = {k: v.sum(-1) for k, v in terms.items()}  # each [L]
    per_layer = _normalised_terms(sums, mask, batch, axis_name)
    total = (
        class_weight * per_layer["loss_ce"]
        + bbox_weight * per_layer["loss_bbox"]
        + giou_weight * per_layer["loss_giou"]
    ).sum()
    in_range = (labels >= 0) & (labels < num_classes)
    total = jnp.where(jnp.all(in_range | ~mask), total, jnp.nan)
    return total, _by_layer_name(per_layer)


def _split_query_groups(
    outputs: Mapping[str, Any], targets: tuple[jax.Array, ...], groups: int
) -> tuple[dict[str, Any], tuple[jax.Array, ...]]:
    """``G`` query groups as ``G`` copies of the batch: predictions ``[B, G * Q, ...]`` ->
    ``[B * G, Q, ...]`` (image-major), every checked target array repeated ``G`` times."""
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups < 1:
        raise ValueError(f"query_groups must be a positive int, got {groups!r}")
    groups = int(groups)

    if not isinstance(outputs, Mapping):
        raise TypeError(f"outputs must be a mapping, got {type(outputs).__name__}")

    def split(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = dict(layer)
        for key in ("logits", "boxes"):
            x = jnp.asarray(layer[key])
            if x.ndim != 3 or x.shape[1] % groups:
                raise ValueError(
                    f"{where}[{key!r}] has shape {x.shape}: its query axis does not split "
                    f"into query_groups={groups}"
                )
            b, q = x.shape[:2]
            out[key] = x.reshape(b * groups, q // groups, x.shape[2])
        return out

    split_outputs = split(outputs, "outputs")
    if outputs.get("aux"):
        split_outputs["aux"] = tuple(
            split(layer, f"outputs['aux'][{i}]") for i, layer in enumerate(outputs["aux"])
        )
    return split_outputs, tuple(jnp.repeat(t, groups, axis=0) for t in targets)


def _stacked_layers(
    outputs: Mapping[str, Any], num_classes: int, batch: int, aux_loss: bool
) -> tuple[jax.Array, jax.Array]:
    """Checked predictions of every decoder layer, auxiliary ones first, final one last:
    float32 ``logits [L, B, Q, C + 1]`` and ``boxes [L, B, Q, 4]``."""
    logits, pred_boxes = _check_prediction(outputs, "outputs", num_classes, batch, None)
    queries = logits.shape[1]
    layers: list[tuple[jax.Array, jax.Array]] = []
    aux = outputs.get("aux") if aux_loss else None
    if aux:
        if not isinstance(aux, Sequence):
            raise TypeError(f"outputs['aux'] must be a sequence of dicts, got {type(aux)}")
        for i, layer in enumerate(aux):
            layers.append(
                _check_prediction(layer, f"outputs['aux'][{i}]", num_classes, batch, queries)
            )
    layers.append((logits, pred_boxes))
    all_logits = jnp.stack([lg.astype(jnp.float32) for lg, _ in layers])  # [L, B, Q, C+1]
    all_boxes = jnp.stack([bx.astype(jnp.float32) for _, bx in layers])  # [L, B, Q, 4]
    return all_logits, all_boxes


def _match_layers(
    all_logits: jax.Array,
    all_boxes: jax.Array,
    labels: jax.Array,
    target_boxes: jax.Array,
    mask: jax.Array,
    matcher: Matcher,
    *,
    cost_class: float,
    cost_bbox: float,
    cost_giou: float,
) -> jax.Array:
    """``target_of_query [L, B, Q]`` of every layer, all layers matched in one vmapped call."""
    num_layers = all_logits.shape[0]
    costs = detr_matching_costs(
        all_logits,
        all_boxes,
        jnp.broadcast_to(labels, (num_layers, *labels.shape)),
        jnp.broadcast_to(target_boxes, (num_layers, *target_boxes.shape)),
        cost_class=cost_class,
        cost_bbox=cost_bbox,
        cost_giou=cost_giou,
    )  # [L, B, Q, T]
    # vmap over layers rather than a reshape to [L * B]: it keeps a sharded batch axis intact.
    _, target_of_query = jax.vmap(matcher, in_axes=(0, None))(costs, mask)
    return jax.lax.stop_gradient(target_of_query)


def _normalised_terms(
    sums: dict[str, jax.Array], mask: jax.Array, batch: int, axis_name: str | None
) -> dict[str, jax.Array]:
    """Per-layer ``[L]`` terms divided by their (global, with ``axis_name``) denominators."""
    num_boxes = mask.sum().astype(jnp.float32)
    weight_sum = sums["weight"]
    correct, matched = sums["correct"], sums["matched"]
    scale = 1.0
    if axis_name is not None:
        scale = jax.lax.psum(1, axis_name)
        num_boxes = jax.lax.psum(num_boxes, axis_name)
        weight_sum = jax.lax.psum(weight_sum, axis_name)
        correct = jax.lax.psum(correct, axis_name)
        matched = jax.lax.psum(matched, axis_name)
    box_norm = jnp.maximum(num_boxes, 1.0) / scale
    ce_norm = jnp.where(weight_sum > 0, weight_sum, 1.0) / scale
    return {
        "loss_ce": sums["ce"] / ce_norm,
        "loss_bbox": sums["bbox"] / box_norm,
        "loss_giou": sums["giou"] / box_norm,
        "cardinality_error": sums["cardinality"] / batch,
        "class_error": 100.0 * (1.0 - correct / jnp.maximum(matched, 1.0)) * (matched > 0),
    }


def _by_layer_name(per_layer: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """``{key: [L]}`` -> HF's names: ``key`` for the final layer, ``key_i`` for aux ones."""
    metrics: dict[str, jax.Array] = {}
    for key, value in per_layer.items():
        metrics[key] = value[-1]
        for i in range(value.shape[0] - 1):
            metrics[f"{key}_{i}"] = value[i]
    return metrics
