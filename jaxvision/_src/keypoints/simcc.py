"""SimCC: keypoints as one classification per axis over ``k`` bins per pixel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.keypoints import checks
from jaxvision._src.ops.pooling import _first_max

LABELS = ("gaussian", "onehot")


def _check_ratio(split_ratio: float) -> float:
    if not split_ratio > 0:
        raise ValueError(f"`split_ratio` must be > 0, got {split_ratio!r}")
    return float(split_ratio)


def _axis_labels(
    coord: Array,
    bins: int,
    ratio: float,
    label: str,
    sigma: float,
    smoothing: float,
    unbiased: bool,
) -> Array:
    """``coord: [..., K]`` pixels -> ``[..., K, bins]`` label distributions."""
    mu = coord * ratio if unbiased else jnp.round(coord * ratio)
    b = jnp.arange(bins, dtype=coord.dtype)
    if label == "gaussian":
        g = jnp.exp(-((b - mu[..., None]) ** 2) / (2 * sigma**2))
        return checks.safe_div(g, jnp.sum(g, axis=-1, keepdims=True))
    onehot = (b == mu[..., None]).astype(coord.dtype)
    return (1.0 - smoothing) * onehot + smoothing / bins


@export("keypoints.simcc_encode")
def simcc_encode(
    keypoints: ArrayLike,
    visibility: ArrayLike | None,
    size: tuple[int, int],
    *,
    split_ratio: float = 2.0,
    label: str = "gaussian",
    sigma: float = 6.0,
    smoothing: float = 0.0,
    unbiased: bool = False,
) -> tuple[Array, Array]:
    """SimCC targets: one distribution over ``W k`` x-bins and one over ``H k`` y-bins.

    Bin ``b`` stands for the coordinate ``b / k`` (mmpose's ``SimCCLabel`` grid), so a
    keypoint at ``x`` falls in bin ``round(x k)`` and decodes to ``round(x k) / k``: the
    quantisation error is at most ``0.5 / k`` pixels.

    Args:
      keypoints: ``[..., K, 2]`` ``(x, y)`` in pixels of the ``size`` image.
      visibility: ``[..., K]``; keypoints with visibility <= 0 get all-zero labels.
        ``None``: all visible.
      size: ``(H, W)``; there are ``int(W k)`` x-bins and ``int(H k)`` y-bins.
      split_ratio: ``k``, bins per pixel (SimCC's default 2).
      label: ``"gaussian"``: ``exp(-(b - mu)^2 / (2 sigma^2))`` normalised to sum 1
        (``sigma`` in bins; SimCC uses 6 at k = 2); ``"onehot"``: one-hot at ``mu`` with
        label smoothing, ``(1 - smoothing) onehot + smoothing / bins``.
      sigma: Gaussian standard deviation in bins.
      smoothing: label smoothing of the one-hot labels, in ``[0, 1]``.
      unbiased: centre the Gaussian on ``x k`` instead of its rounded bin.

    Returns:
      ``(x_labels [..., K, W k], y_labels [..., K, H k])``, each row a distribution (a
      keypoint outside the grid may get a one-hot row that sums to ``smoothing`` only).

    References:
      Li et al., "SimCC: a Simple Coordinate Classification Perspective for Human Pose
      Estimation", ECCV 2022.

    Examples:
      >>> import numpy as np
      >>> lx, ly = simcc_encode(np.array([[50.3, 4.0]]), None, (256, 192))
      >>> lx.shape, ly.shape
      ((1, 384), (1, 512))
      >>> int(lx.argmax()), round(float(lx.max()), 6), round(float(lx.sum()), 6)
      (101, 0.06649, 1.0)
    """
    kp = checks.as_keypoints(keypoints)
    vis = checks.check_visibility(visibility, kp, "visibility")
    h, w = checks.check_size(size)
    ratio = _check_ratio(split_ratio)
    label = checks.check_choice(label, LABELS, "label")
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0, got {sigma!r}")
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"`smoothing` must be in [0, 1], got {smoothing!r}")
    keep = (vis > 0)[..., None]
    out = []
    for axis, bins in ((0, int(w * ratio)), (1, int(h * ratio))):
        lab = _axis_labels(kp[..., axis], bins, ratio, label, sigma, smoothing, unbiased)
        out.append(jnp.where(keep, lab, 0.0))
    return out[0], out[1]


@export("keypoints.simcc_decode")
def simcc_decode(
    x_logits: ArrayLike, y_logits: ArrayLike, *, split_ratio: float = 2.0
) -> tuple[Array, Array]:
    """Decodes SimCC vectors at their maxima: coordinate ``argmax / k``.

    Args:
      x_logits: ``[..., K, Wk]`` scores over x-bins.
      y_logits: ``[..., K, Hk]`` scores over y-bins, same ``[..., K]``.
      split_ratio: ``k``, bins per pixel.

    Returns:
      ``(keypoints [..., K, 2] in pixels, scores [..., K])``; the score is the smaller of
      the two maxima (mmpose's ``get_simcc_maximum``). A vector holding NaN decodes to its
      first NaN with score NaN, as NumPy's ``argmax`` / ``amax`` give.

    Examples:
      >>> import numpy as np
      >>> lx, ly = simcc_encode(np.array([[10.3, 4.0]]), None, (256, 192))
      >>> np.asarray(simcc_decode(lx, ly)[0])
      array([[10.5,  4. ]], dtype=float32)
    """
    lx = checks.as_float(x_logits, "x_logits")
    ly = checks.as_float(y_logits, "y_logits")
    ratio = _check_ratio(split_ratio)
    for name, a in (("x_logits", lx), ("y_logits", ly)):
        if a.ndim < 2:
            raise ValueError(f"`{name}` must be [..., K, bins], got shape {a.shape}")
    if lx.shape[:-1] != ly.shape[:-1]:
        raise ValueError(f"`x_logits` {lx.shape} and `y_logits` {ly.shape} must agree on [..., K]")
    lx, ly = jax.lax.stop_gradient(lx), jax.lax.stop_gradient(ly)
    xy = jnp.stack([jnp.argmax(lx, axis=-1), jnp.argmax(ly, axis=-1)], axis=-1)
    score = jnp.minimum(_first_max(lx, lx.ndim - 1), _first_max(ly, ly.ndim - 1))  # NaN kept
    return xy.astype(lx.dtype) / ratio, score
