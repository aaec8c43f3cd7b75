"""The face detector's training loss: anchor assignment, classification, box and landmarks.

One pure function of the raw outputs and padded targets, so that it runs inside a jitted
training step: anchors are assigned by IoU (:func:`jaxvision.boxes.assign_anchors`), the
classification term is the sigmoid focal loss (RetinaNet) or binary cross-entropy with
hard-negative mining (RetinaFace / SSD: the ``negative_ratio`` hardest negatives per
positive), and positives regress their encoded box and, where annotated, landmarks with
smooth L1.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks
from jaxvision._src.boxes.anchor_assign import assign_anchors, check_iou_option
from jaxvision._src.boxes.box_coder import DEFAULT_VARIANCES, check_variances, encode_boxes
from jaxvision._src.export import export
from jaxvision._src.keypoints.landmark_coder import check_landmarks, encode_landmarks
from jaxvision._src.models.face_detector import FaceDetectorOutput

_CLASSIFICATIONS = ("focal", "ohem")


@export("models.FaceTargets")
class FaceTargets(NamedTuple):
    """Padded ground truth of a batch of images for :func:`face_detector_loss`.

    Attributes:
      boxes: ``[B, G, 4]`` face boxes ``xyxy`` in pixels, padded to ``G``.
      landmarks: ``[B, G, K, 2]`` landmarks ``(x, y)`` in pixels (any value where absent).
      valid: ``[B, G]`` bool, False for padding.
      landmark_valid: ``[B, G]`` bool, True where the face's landmarks are annotated
        (box-only faces, such as WIDER FACE's small ones, have False).

    Examples:
      >>> no_face = jnp.zeros((1, 0), bool)
      >>> FaceTargets(jnp.zeros((1, 0, 4)), jnp.zeros((1, 0, 5, 2)), no_face, no_face)._fields
      ('boxes', 'landmarks', 'valid', 'landmark_valid')
    """

    boxes: ArrayLike
    landmarks: ArrayLike
    valid: ArrayLike
    landmark_valid: ArrayLike


@export("models.FaceDetectorLoss")
class FaceDetectorLoss(NamedTuple):
    """Terms of :func:`face_detector_loss` (scalars).

    Attributes:
      total: ``classification + box_weight * box + landmark_weight * landmarks``.
      classification: focal or mined cross-entropy, summed and divided by the positives.
      box: smooth L1 of the encoded boxes of positives, per positive.
      landmarks: smooth L1 of the encoded landmarks, per positive with landmarks.
      num_positive: number of positive anchors in the batch (float32).

    Examples:
      >>> FaceDetectorLoss._fields
      ('total', 'classification', 'box', 'landmarks', 'num_positive')
    """

    total: Array
    classification: Array
    box: Array
    landmarks: Array
    num_positive: Array


def _check_weight(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"`{name}` must be a number >= 0, got {value!r}")
    return float(value)


def _check_inputs(outputs: FaceDetectorOutput, targets: FaceTargets, anchors: ArrayLike, k: int):
    anchors = checks.as_boxes(anchors, "anchors")
    if anchors.ndim != 2:
        raise ValueError(f"`anchors` must have shape [A, 4], got shape {anchors.shape}")
    num_anchors = anchors.shape[0]
    logits = jnp.asarray(outputs.logits)
    if logits.ndim != 2 or logits.shape[1] != num_anchors:
        raise ValueError(f"`outputs.logits` must be [B, A={num_anchors}], got {logits.shape}")
    b = logits.shape[0]
    deltas = jnp.asarray(outputs.box_deltas)
    if deltas.shape != (b, num_anchors, 4):
        raise ValueError(f"`outputs.box_deltas` must be {(b, num_anchors, 4)}, got {deltas.shape}")
    lm_deltas = check_landmarks(outputs.landmark_deltas, "outputs.landmark_deltas", k)
    if lm_deltas.shape[:2] != (b, num_anchors):
        raise ValueError(
            f"`outputs.landmark_deltas` must be {(b, num_anchors, k, 2)}, got {lm_deltas.shape}"
        )
    boxes = checks.as_boxes(targets.boxes, "targets.boxes")
    if boxes.ndim != 3 or boxes.shape[0] != b:
        raise ValueError(f"`targets.boxes` must be [B={b}, G, 4], got shape {boxes.shape}")
    g = boxes.shape[1]
    landmarks = check_landmarks(targets.landmarks, "targets.landmarks", k)
    if landmarks.shape[:2] != (b, g):
        raise ValueError(f"`targets.landmarks` must be {(b, g, k, 2)}, got {landmarks.shape}")
    masks = []
    for name in ("valid", "landmark_valid"):
        m = jnp.asarray(getattr(targets, name))
        if m.shape != (b, g):
            raise ValueError(f"`targets.{name}` must be {(b, g)}, got shape {m.shape}")
        masks.append(m.astype(bool))
    return (
        FaceDetectorOutput(
            logits.astype(jnp.float32), deltas.astype(jnp.float32), lm_deltas.astype(jnp.float32)
        ),
        FaceTargets(boxes.astype(jnp.float32), landmarks.astype(jnp.float32), *masks),
        anchors.astype(jnp.float32),
    )


def _mined_negatives(loss: Array, negative: Array, num_pos: Array, ratio: float) -> Array:
    """The ``ratio * max(num_pos, 1)`` negatives of highest ``loss`` per image, ``[B, A]``."""
    ranked = jnp.where(negative, jax.lax.stop_gradient(loss), -jnp.inf)
    order = jnp.argsort(-ranked, axis=1, stable=True)
    rank = jnp.argsort(order, axis=1, stable=True)
    quota = jnp.ceil(ratio * jnp.maximum(num_pos, 1))[:, None]
    return negative & (rank < quota)


def _classification(logits, positive, negative, kind, alpha, gamma, ratio) -> Array:
    labels = positive.astype(jnp.float32)
    if kind == "focal":
        per_anchor = optax.sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma)
        return jnp.sum(jnp.where(positive | negative, per_anchor, 0.0))
    per_anchor = optax.sigmoid_binary_cross_entropy(logits, labels)
    kept = _mined_negatives(per_anchor, negative, jnp.sum(positive, axis=1), ratio)
    return jnp.sum(jnp.where(positive | kept, per_anchor, 0.0))


@dataclasses.dataclass(frozen=True)
class _Options:
    """The static options of one loss, checked (hashable, for jit)."""

    classification: str
    positive_iou: float
    negative_iou: float
    min_best_iou: float
    alpha: float
    gamma: float
    ratio: float
    box_weight: float
    landmark_weight: float
    variances: tuple[float, float]


def _gather(values: Array, index: Array) -> Array:
    """``values: [B, G, ...]`` at ``index: [B, A]`` -> ``[B, A, ...]``."""
    idx = index.reshape(index.shape + (1,) * (values.ndim - 2))
    return jnp.take_along_axis(values, idx, axis=1)


@functools.partial(jax.jit, static_argnames=("options",))
def _loss(
    outputs: FaceDetectorOutput, targets: FaceTargets, anchors: Array, options: _Options
) -> FaceDetectorLoss:
    # One compiled computation, so that eager calls do not dispatch op by op.
    o = options
    assignment = assign_anchors(
        anchors,
        targets.boxes,
        targets.valid,
        positive_iou=o.positive_iou,
        negative_iou=o.negative_iou,
        min_best_iou=o.min_best_iou,
    )
    positive, negative = assignment.labels == 1, assignment.labels == 0
    num_pos = jnp.sum(positive).astype(jnp.float32)
    index = jnp.maximum(assignment.matched, 0)
    cls = _classification(
        outputs.logits, positive, negative, o.classification, o.alpha, o.gamma, o.ratio
    )
    # Non-positive anchors regress onto themselves, so that no target is ever log(0).
    matched_boxes = jnp.where(positive[..., None], _gather(targets.boxes, index), anchors)
    box_target = encode_boxes(matched_boxes, anchors, variances=o.variances)
    box_loss = optax.huber_loss(outputs.box_deltas, box_target).sum(-1)
    with_landmarks = positive & _gather(targets.landmark_valid, index)
    matched_lm = jnp.where(with_landmarks[..., None, None], _gather(targets.landmarks, index), 0.0)
    k = matched_lm.shape[-2]
    lm_target = encode_landmarks(matched_lm, anchors, variance=o.variances[0], num_landmarks=k)
    lm_loss = optax.huber_loss(outputs.landmark_deltas, lm_target).sum((-2, -1))
    denom = jnp.maximum(num_pos, 1.0)
    cls = cls / denom
    box = jnp.sum(jnp.where(positive, box_loss, 0.0)) / denom
    lm = jnp.sum(jnp.where(with_landmarks, lm_loss, 0.0)) / jnp.maximum(jnp.sum(with_landmarks), 1)
    total = cls + o.box_weight * box + o.landmark_weight * lm
    return FaceDetectorLoss(total, cls, box, lm, num_pos)


@export("models.face_detector_loss")
def face_detector_loss(
    outputs: FaceDetectorOutput,
    targets: FaceTargets,
    anchors: ArrayLike,
    *,
    classification: str = "focal",
    positive_iou: float = 0.35,
    negative_iou: float = 0.35,
    min_best_iou: float = 0.2,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    negative_ratio: float = 7.0,
    box_weight: float = 2.0,
    landmark_weight: float = 1.0,
    variances: Sequence[float] = DEFAULT_VARIANCES,
    num_landmarks: int = 5,
) -> FaceDetectorLoss:
    """Training loss of the face detector on padded targets; pure, for use inside jit.

    Anchors are assigned per image with :func:`jaxvision.boxes.assign_anchors`. Then:

    - classification over positives and negatives (ignored anchors excluded): the sigmoid
      focal loss (``"focal"``, RetinaNet's ``alpha = 0.25``, ``gamma = 2``) or binary
      cross-entropy on the positives plus the ``negative_ratio`` hardest negatives per
      positive of each image (``"ohem"``, RetinaFace's 7:1). An image without positives
      keeps ``negative_ratio`` negatives, so background-only images still count
      (RetinaFace's port keeps none);
    - box: smooth L1 (``beta = 1``) of :func:`jaxvision.boxes.encode_boxes` targets;
    - landmarks: smooth L1 of :func:`jaxvision.keypoints.encode_landmarks` targets, for
      positives whose face has ``landmark_valid``.

    Classification and box are divided by the batch's positives, landmarks by its
    positives with landmarks (each at least 1), so every term is finite with no faces at
    all or faces smaller than every anchor (then only the negatives count). The default
    weights are those of RetinaFace's PyTorch port (box 2, landmarks 1); the paper writes
    ``0.25`` and ``0.1`` with another normalisation.

    Args:
      outputs: :class:`FaceDetectorOutput` with ``logits [B, A]``, ``box_deltas
        [B, A, 4]``, ``landmark_deltas [B, A, K, 2]``.
      targets: :class:`FaceTargets` padded to ``G`` faces per image (``G`` may be 0).
      anchors: ``[A, 4]`` ``xyxy`` anchors in pixels.
      classification: ``"focal"`` (default) or ``"ohem"``.
      positive_iou, negative_iou, min_best_iou: as :func:`jaxvision.boxes.assign_anchors`.
      focal_alpha, focal_gamma: focal loss parameters.
      negative_ratio: hard negatives per positive for ``"ohem"``.
      box_weight, landmark_weight: weights of the regression terms.
      variances: the coder's ``(v0, v1)``; landmarks use ``v0``.
      num_landmarks: ``K``, landmarks per face (5).

    Returns:
      :class:`FaceDetectorLoss` of float32 scalars.

    Raises:
      ValueError: shapes that do not fit (landmarks not ``[..., K, 2]``, ``A`` differing
        between outputs and anchors) or bad options.

    References:
      Deng et al., "RetinaFace", CVPR 2020; Lin et al., "Focal Loss for Dense Object
      Detection", ICCV 2017; Liu et al., "SSD", ECCV 2016 (hard negative mining).

    Examples:
      >>> anchors = jnp.array([[0.0, 0.0, 16.0, 16.0], [16.0, 0.0, 32.0, 16.0]])
      >>> outputs = FaceDetectorOutput(
      ...     jnp.zeros((1, 2)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2, 5, 2))
      ... )
      >>> no_faces = jnp.zeros((1, 0), bool)
      >>> targets = FaceTargets(jnp.zeros((1, 0, 4)), jnp.zeros((1, 0, 5, 2)), no_faces, no_faces)
      >>> round(float(face_detector_loss(outputs, targets, anchors).total), 6)
      0.25993
    """
    if classification not in _CLASSIFICATIONS:
        raise ValueError(
            f"`classification` must be one of {_CLASSIFICATIONS}, got {classification!r}"
        )
    alpha = _check_weight(focal_alpha, "focal_alpha")
    gamma = _check_weight(focal_gamma, "focal_gamma")
    ratio = _check_weight(negative_ratio, "negative_ratio")
    w_box = _check_weight(box_weight, "box_weight")
    w_lm = _check_weight(landmark_weight, "landmark_weight")
    variances = check_variances(variances)
    if isinstance(num_landmarks, bool) or not isinstance(num_landmarks, int) or num_landmarks < 1:
        raise ValueError(f"`num_landmarks` must be a positive int, got {num_landmarks!r}")
    k = num_landmarks
    outputs, targets, anchors = _check_inputs(outputs, targets, anchors, k)
    options = _Options(
        classification,
        check_iou_option(positive_iou, "positive_iou"),
        check_iou_option(negative_iou, "negative_iou"),
        check_iou_option(min_best_iou, "min_best_iou"),
        alpha,
        gamma,
        ratio,
        w_box,
        w_lm,
        variances,
    )
    return _loss(outputs, targets, anchors, options)
