"""Face detector post-processing: decode, keep the top scores, NMS; one jitted batch call.

RetinaFace's reference post-processing runs per image in NumPy: decode all anchors, drop
scores below 0.02, keep the 5,000 best, ``py_cpu_nms`` at IoU 0.4, keep 750. Here the same
steps run for the whole batch inside jit with static shapes: the score threshold becomes a
mask applied after a fixed-size ``top_k``, and :func:`jaxvision.boxes.nms` returns a padded
index list and a count.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks
from jaxvision._src.boxes.box_coder import DEFAULT_VARIANCES, check_variances, decode_boxes
from jaxvision._src.boxes.nms import nms
from jaxvision._src.export import export
from jaxvision._src.keypoints.landmark_coder import decode_landmarks
from jaxvision._src.models.face_detector import FaceDetectorOutput


@export("models.FaceDetections")
class FaceDetections(NamedTuple):
    """Detections of a batch, padded to ``D`` per image, best first.

    Attributes:
      boxes: ``[B, D, 4]`` ``xyxy`` pixels (0 in padding).
      scores: ``[B, D]`` face probabilities (0 in padding).
      landmarks: ``[B, D, K, 2]`` ``(x, y)`` pixels (0 in padding).
      count: ``[B]`` int32, the number of real detections of each image.

    Examples:
      >>> FaceDetections._fields
      ('boxes', 'scores', 'landmarks', 'count')
    """

    boxes: Array
    scores: Array
    landmarks: Array
    count: Array


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return int(value)


def _one_image(logits, deltas, lm_deltas, anchors, threshold, iou, top_k, keep, variances):
    scores = jax.nn.sigmoid(logits)
    top_scores, top = jax.lax.top_k(scores, top_k)
    boxes = decode_boxes(deltas[top], anchors[top], variances=variances)
    landmarks = decode_landmarks(
        lm_deltas[top], anchors[top], variance=variances[0], num_landmarks=lm_deltas.shape[-2]
    )
    # Below-threshold boxes sort after every kept one, so masking after NMS is exact.
    kept, count = nms(boxes, top_scores, iou, max_output=keep)
    valid = (jnp.arange(keep) < count) & (top_scores[jnp.maximum(kept, 0)] > threshold)
    idx = jnp.maximum(kept, 0)
    return FaceDetections(
        jnp.where(valid[:, None], boxes[idx], 0.0),
        jnp.where(valid, top_scores[idx], 0.0),
        jnp.where(valid[:, None, None], landmarks[idx], 0.0),
        jnp.sum(valid).astype(jnp.int32),
    )


@functools.partial(jax.jit, static_argnames=("top_k", "keep", "variances"))
def _postprocess(outputs, anchors, threshold, iou, *, top_k, keep, variances):
    return jax.vmap(
        lambda lo, d, lm: _one_image(lo, d, lm, anchors, threshold, iou, top_k, keep, variances)
    )(outputs.logits, outputs.box_deltas, outputs.landmark_deltas)


@export("models.face_detector_postprocess")
def face_detector_postprocess(
    outputs: FaceDetectorOutput,
    anchors: ArrayLike,
    *,
    score_threshold: ArrayLike = 0.02,
    iou_threshold: ArrayLike = 0.4,
    pre_nms_top_k: int = 5000,
    max_detections: int = 750,
    variances: Sequence[float] = DEFAULT_VARIANCES,
) -> FaceDetections:
    """Decodes a batch of detector outputs into boxes, scores and landmarks, with NMS.

    Per image: sigmoid scores; the ``pre_nms_top_k`` best anchors (``lax.top_k``, ties to
    the lower index); boxes and landmarks decoded there; greedy NMS
    (:func:`jaxvision.boxes.nms`, suppression at IoU ``> iou_threshold``) keeping at most
    ``max_detections``; finally detections scoring ``<= score_threshold`` dropped. The
    defaults are RetinaFace's evaluation settings (0.02, 0.4, 5,000, 750). The reference
    drops low scores before the top-k: the result is the same (a low score can neither be
    among the kept ones nor suppress a higher one) as long as fewer than ``pre_nms_top_k``
    anchors pass the threshold; beyond that both keep the best ``pre_nms_top_k``.

    Args:
      outputs: :class:`FaceDetectorOutput` with ``A`` anchors.
      anchors: ``[A, 4]`` ``xyxy`` anchors the outputs were trained against.
      score_threshold: detections scoring at or below it are dropped (may be traced).
      iou_threshold: NMS threshold (may be traced).
      pre_nms_top_k: candidates per image entering NMS (static; clipped to ``A``).
      max_detections: ``D``, the static size of the result (may exceed the candidates:
        the rest is padding).
      variances: the coder's ``(v0, v1)``.

    Returns:
      :class:`FaceDetections` padded to ``D`` per image, with ``count [B]``.

    Raises:
      ValueError: shapes that do not fit, or non-positive sizes.

    References:
      Deng et al., "RetinaFace", CVPR 2020 (the evaluation settings of its PyTorch port).

    Examples:
      >>> anchors = jnp.array(
      ...     [[0.0, 0.0, 16.0, 16.0], [2.0, 0.0, 18.0, 16.0], [32.0, 0.0, 48.0, 16.0]]
      ... )
      >>> outputs = FaceDetectorOutput(
      ...     jnp.array([[3.0, 2.0, -9.0]]), jnp.zeros((1, 3, 4)), jnp.zeros((1, 3, 5, 2))
      ... )
      >>> det = face_detector_postprocess(outputs, anchors, max_detections=2)
      >>> det.count, det.boxes[0, 0]
      (Array([1], dtype=int32), Array([ 0.,  0., 16., 16.], dtype=float32))
    """
    anchors = checks.as_boxes(anchors, "anchors")
    if anchors.ndim != 2:
        raise ValueError(f"`anchors` must have shape [A, 4], got shape {anchors.shape}")
    a = anchors.shape[0]
    logits = jnp.asarray(outputs.logits)
    if logits.ndim != 2 or logits.shape[1] != a:
        raise ValueError(f"`outputs.logits` must be [B, A={a}], got shape {logits.shape}")
    deltas = checks.as_boxes(outputs.box_deltas, "outputs.box_deltas")
    if deltas.shape != (*logits.shape, 4):
        raise ValueError(f"`outputs.box_deltas` must be {(*logits.shape, 4)}, got {deltas.shape}")
    lm = jnp.asarray(outputs.landmark_deltas)
    if lm.ndim != 4 or lm.shape[:2] != logits.shape or lm.shape[-1] != 2:
        raise ValueError(
            f"`outputs.landmark_deltas` must be [B, A, K, 2] with [B, A] = {logits.shape}, "
            f"got {lm.shape}"
        )
    top_k = min(_check_int(pre_nms_top_k, "pre_nms_top_k"), a)
    keep = _check_int(max_detections, "max_detections")
    return _postprocess(
        FaceDetectorOutput(
            logits.astype(jnp.float32), deltas.astype(jnp.float32), lm.astype(jnp.float32)
        ),
        anchors.astype(jnp.float32),
        jnp.float32(score_threshold),
        jnp.float32(iou_threshold),
        top_k=top_k,
        keep=keep,
        variances=check_variances(variances),
    )
