"""L2 normalisation and the cosine classifier's logits, finite at zero vectors."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("ops.l2_normalize")
def l2_normalize(x: ArrayLike, *, axis: int = -1, eps: float = 1e-6) -> Array:
    """``x / max(|x|, eps)`` along ``axis``, as ``torch.nn.functional.normalize``.

    Values and gradients are finite for the zero vector (its result is 0). ``eps`` is
    1e-6 rather than torch's 1e-12 so that the gradient at the zero vector is ``1 / eps
    = 1e6`` instead of 1e12; the two agree for every vector longer than 1e-6.

    Args:
      x: ``[..., D, ...]`` vectors along ``axis``.
      axis: the vector axis.
      eps: the smallest norm divided by, > 0.

    Returns:
      Unit vectors of the shape of ``x`` (float32 for integer input).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import ops
      >>> ops.l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
      Array([[0.6, 0.8],
             [0. , 0. ]], dtype=float32)
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    sq = jnp.sum(x * x, axis=axis, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return x / jnp.maximum(norm, eps)


@export("ops.pairwise_cosine")
def pairwise_cosine(embeddings: ArrayLike, centres: ArrayLike, *, eps: float = 1e-6) -> Array:
    """Cosines between embeddings ``[..., D]`` and class centres ``[C, D]``: ``[..., C]``.

    ``l2_normalize(embeddings) @ l2_normalize(centres).T``: the logits of the cosine
    classifier of NormFace / ArcFace before the margin and the scale. A zero embedding or
    centre gives cosine 0 with finite gradients.

    Args:
      embeddings: ``[..., D]`` features.
      centres: ``[C, D]`` class centres (the classifier's weight, one row per class).
      eps: as ``l2_normalize``.

    Returns:
      ``[..., C]`` cosines in ``[-1, 1]``, in the promoted floating dtype.

    Raises:
      ValueError: ``centres`` is not 2-D or its width differs from the embeddings'.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import ops
      >>> ops.pairwise_cosine(jnp.array([[1.0, 1.0]]), jnp.array([[2.0, 0.0], [0.0, 0.0]]))
      Array([[0.70710677, 0.        ]], dtype=float32)
    """
    e = jnp.asarray(embeddings)
    w = jnp.asarray(centres)
    if w.ndim != 2:
        raise ValueError(f"`centres` must be [C, D], got shape {w.shape}")
    if e.ndim < 1 or e.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"`embeddings` [..., D] and `centres` [C, D] must have the same width D, got "
            f"shapes {e.shape} and {w.shape}"
        )
    return l2_normalize(e, eps=eps) @ l2_normalize(w, eps=eps).T
