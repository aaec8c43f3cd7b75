"""RetinaFace's landmark coder: each landmark as an offset from its anchor's centre.

``encode(p, a) = ((x - cx_a) / (v0 w_a), (y - cy_a) / (v0 h_a))`` for every landmark, with
the centre variance ``v0 = 0.1`` of the box coder, as RetinaFace's PyTorch port does.
"""

from __future__ import annotations

import numbers

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.boxes import checks
from jaxvision._src.boxes.box_coder import anchor_centres
from jaxvision._src.export import export


def check_landmarks(landmarks: ArrayLike, name: str, num_landmarks: int) -> Array:
    """Converts ``landmarks`` to an array, checking its shape is ``[..., num_landmarks, 2]``."""
    if isinstance(num_landmarks, bool) or not isinstance(num_landmarks, numbers.Integral):
        raise TypeError(f"`num_landmarks` must be an int, got {num_landmarks!r}")
    if isinstance(landmarks, (str, bytes)) or landmarks is None:
        raise TypeError(f"`{name}` must be an array of landmarks, got {type(landmarks).__name__}")
    x = jnp.asarray(landmarks)
    if x.ndim < 2 or x.shape[-2:] != (num_landmarks, 2):
        raise ValueError(f"`{name}` must have shape [..., {num_landmarks}, 2], got shape {x.shape}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"`{name}` must hold real numbers, got dtype {x.dtype}")
    return x


def _check_variance(variance: object) -> float:
    if isinstance(variance, bool) or not isinstance(variance, numbers.Real) or not variance > 0:
        raise ValueError(f"`variance` must be a positive number, got {variance!r}")
    return float(variance)


def _anchor_frame(anchors: ArrayLike, landmarks: Array, fmt: str, name: str):
    a = checks.as_boxes(anchors, "anchors")
    try:
        jnp.broadcast_shapes(landmarks.shape[:-2], a.shape[:-1])
    except ValueError:
        raise ValueError(
            f"`{name}` {landmarks.shape} must be [..., K, 2] with [...] broadcastable against "
            f"`anchors` {a.shape[:-1]} + (4,)"
        ) from None
    dtype = checks.compute_dtype(landmarks, a)
    cx, cy, w, h = anchor_centres(a.astype(dtype), fmt)
    centre = jnp.stack([cx, cy], axis=-1)[..., None, :]
    size = jnp.stack([w, h], axis=-1)[..., None, :]
    return centre, size, dtype


@export("keypoints.encode_landmarks")
def encode_landmarks(
    landmarks: ArrayLike,
    anchors: ArrayLike,
    *,
    variance: float = 0.1,
    num_landmarks: int = 5,
    fmt: str = "xyxy",
) -> Array:
    """Encodes landmarks as offsets from their anchor's centre, in anchor sizes (RetinaFace).

    ``t_k = ((x_k - cx_a) / (v w_a), (y_k - cy_a) / (v h_a))`` for each landmark ``k``.

    Args:
      landmarks: ``[..., K, 2]`` ``(x, y)`` pixels, ``K = num_landmarks`` (5 for faces:
        eyes, nose, mouth corners).
      anchors: ``[..., 4]`` anchors in format ``fmt``, ``[...]`` broadcastable against the
        landmarks' ``[...]``.
      variance: the centre variance ``v``, 0.1 as RetinaFace.
      num_landmarks: the ``K`` the landmarks must have (default 5).
      fmt: format of ``anchors``.

    Returns:
      ``[..., K, 2]`` offsets in at least float32.

    Raises:
      ValueError: ``landmarks`` is not ``[..., num_landmarks, 2]``, or does not broadcast
        against ``anchors``.

    References:
      Deng et al., "RetinaFace: Single-shot Multi-level Face Localisation in the Wild",
      CVPR 2020.

    Examples:
      >>> points = jnp.array([[8.0, 12.0], [24.0, 12.0], [16.0, 18.0], [10.0, 24.0], [22.0, 24.0]])
      >>> encode_landmarks(points, jnp.array([0.0, 0.0, 32.0, 32.0]))[0]
      Array([-2.5 , -1.25], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    v = _check_variance(variance)
    x = check_landmarks(landmarks, "landmarks", num_landmarks)
    centre, size, dtype = _anchor_frame(anchors, x, fmt, "landmarks")
    return (x.astype(dtype) - centre) / (v * size)


@export("keypoints.decode_landmarks")
def decode_landmarks(
    deltas: ArrayLike,
    anchors: ArrayLike,
    *,
    variance: float = 0.1,
    num_landmarks: int = 5,
    fmt: str = "xyxy",
) -> Array:
    """Decodes landmark offsets into pixels: the inverse of :func:`encode_landmarks`.

    Args:
      deltas: ``[..., K, 2]`` offsets, ``K = num_landmarks``.
      anchors: ``[..., 4]`` anchors in format ``fmt``, ``[...]`` broadcastable against the
        deltas' ``[...]``.
      variance: the centre variance, 0.1 as RetinaFace.
      num_landmarks: the ``K`` the deltas must have (default 5).
      fmt: format of ``anchors``.

    Returns:
      ``[..., K, 2]`` landmarks ``(x, y)`` in pixels, in at least float32.

    Raises:
      ValueError: ``deltas`` is not ``[..., num_landmarks, 2]``.

    References:
      Deng et al., "RetinaFace: Single-shot Multi-level Face Localisation in the Wild",
      CVPR 2020.

    Examples:
      >>> decode_landmarks(jnp.full((5, 2), 1.0), jnp.array([0.0, 0.0, 32.0, 32.0]))[0]
      Array([19.2, 19.2], dtype=float32)
    """
    fmt = checks.check_fmt(fmt)
    v = _check_variance(variance)
    d = check_landmarks(deltas, "deltas", num_landmarks)
    centre, size, dtype = _anchor_frame(anchors, d, fmt, "deltas")
    return centre + d.astype(dtype) * v * size
