"""Additive / multiplicative angular margin softmax: ArcFace, CosFace, SphereFace, combined.

One formula covers the family (insightface's combined margin, Deng et al. 2019, eq. 4):
the logit of the labelled class becomes ``s (cos(m1 theta + m2) - m3)`` with
``theta = arccos(cos)``, every other logit ``s cos``. ``m1`` is SphereFace's
multiplicative angular margin, ``m2`` ArcFace's additive angular margin and ``m3``
CosFace's additive cosine margin.

Gradients: by default they flow through the margin, i.e. they are the true derivatives
of the loss that is computed. insightface's ``CombinedMarginLoss`` applies the ArcFace
margin under ``torch.no_grad`` (insightface issue #2309): its backward pass is that of
``s cos`` without the margin. ``detach_margin=True`` reproduces it.

Where ``m1 theta + m2`` passes ``pi`` the cosine turns back up and the "margin" would
reward a wrong angle; ``fallback`` chooses what the target logit is there.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import REGISTRY, Endpoint, export

FALLBACKS = ("classic", "monotonic", "none")

MARGIN_PRESETS: Mapping[str, Mapping[str, object]] = types.MappingProxyType(
    {
        # Deng et al., ArcFace (CVPR 2019): s = 64, m = 0.5; insightface's threshold rule.
        "arcface": types.MappingProxyType(dict(scale=64.0, m1=1.0, m2=0.5, m3=0.0)),
        # Wang et al., CosFace (CVPR 2018): s = 64, m = 0.35 (insightface's configs use 0.4).
        "cosface": types.MappingProxyType(dict(scale=64.0, m1=1.0, m2=0.0, m3=0.35)),
        # SphereFace's multiplicative margin on normalised features, m1 = 1.35 as in the
        # ArcFace paper's combined-margin study; monotonic extension psi(theta) of
        # Liu et al., SphereFace (CVPR 2017), eq. 6.
        "sphereface": types.MappingProxyType(
            dict(scale=64.0, m1=1.35, m2=0.0, m3=0.0, fallback="monotonic")
        ),
        # The ArcFace paper's combined margin (m1, m2, m3) = (1, 0.3, 0.2).
        "combined": types.MappingProxyType(dict(scale=64.0, m1=1.0, m2=0.3, m3=0.2)),
    }
)
REGISTRY.add(Endpoint("losses.MARGIN_PRESETS", __name__, "MARGIN_PRESETS", MARGIN_PRESETS))


def _options(
    scale: float, m1: float, m2: float, m3: float, fallback: str
) -> tuple[float, float, float, float]:
    values = {"scale": scale, "m1": m1, "m2": m2, "m3": m3}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"`{name}` must be a finite Python number, got {v!r}")
    if scale <= 0 or m1 <= 0:
        raise ValueError(f"`scale` and `m1` must be > 0, got scale={scale!r}, m1={m1!r}")
    if fallback not in FALLBACKS:
        raise ValueError(f"`fallback` must be one of {FALLBACKS}, got {fallback!r}")
    return float(scale), float(m1), float(m2), float(m3)


def check_labels(cosines: Array, labels: ArrayLike) -> Array:
    """``labels`` as int32 of shape ``cosines.shape[:-1]``; concrete values in ``[0, C)``."""
    if isinstance(labels, jax.core.Tracer):
        lab = labels
    else:
        host = np.asarray(labels)
        if host.size and (host.min() < 0 or host.max() >= cosines.shape[-1]):
            raise ValueError(
                f"`labels` must lie in [0, {cosines.shape[-1]}) (C = cosines.shape[-1]), "
                f"got values in [{host.min()}, {host.max()}]"
            )
        lab = jnp.asarray(labels)
    if not jnp.issubdtype(lab.dtype, jnp.integer):
        raise TypeError(f"`labels` must be integers, got dtype {lab.dtype}")
    if lab.shape != cosines.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape cosines.shape[:-1] = {cosines.shape[:-1]}, got {lab.shape}"
        )
    return lab.astype(jnp.int32)


def target_cosine(
    cos: Array, m1: float, m2: float, m3: float, easy_margin: bool, fallback: str
) -> Array:
    """``cos(m1 theta + m2) - m3`` of target cosines ``[...]`` with the chosen fallback.

    ``sin theta`` is taken as exactly 0 at ``cos = +-1`` (where its derivative is
    infinite), so values and gradients are finite there.
    """
    c = jnp.clip(cos, -1.0, 1.0)
    one_minus = (1 - c) * (1 + c)
    inside = one_minus > 0
    sin = jnp.where(inside, jnp.sqrt(jnp.where(inside, one_minus, 1.0)), 0.0)
    theta = jnp.arctan2(sin, c)
    phi = m1 * theta + m2
    if m1 == 1.0:  # cos(theta + m2) without the angle: insightface's ArcFace numerics
        margin = c * math.cos(m2) - sin * math.sin(m2)
    else:
        margin = jnp.cos(phi)
    if fallback == "monotonic":
        # SphereFace's psi: (-1)^k cos(phi) - 2k on [k pi, (k + 1) pi), continuous and
        # decreasing in theta.
        k = jax.lax.stop_gradient(jnp.floor(jnp.maximum(phi, 0.0) / math.pi))
        margin = jnp.where(k % 2 == 1, -margin, margin) - 2 * k
    elif fallback == "classic" and (math.pi - m2) / m1 < math.pi:
        # insightface's ArcFace: past theta + m = pi use cos - m sin(m), CosFace-like.
        margin = jnp.where(phi > math.pi, c - m2 * math.sin(m2), margin)
    if easy_margin:
        return jnp.where(c > 0, margin - m3, c)
    return margin - m3


@export("losses.margin_logits")
def margin_logits(
    cosines: ArrayLike,
    labels: ArrayLike,
    *,
    scale: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    easy_margin: bool = False,
    fallback: str = "classic",
    detach_margin: bool = False,
) -> Array:
    """Margin-softmax logits: ``s (cos(m1 theta + m2) - m3)`` at the label, ``s cos`` elsewhere.

    The defaults are ArcFace's (``s = 64``, ``m2 = 0.5``); ``MARGIN_PRESETS`` holds
    ArcFace, CosFace, SphereFace and the combined margin, to be passed as
    ``**MARGIN_PRESETS["cosface"]``.

    Conventions where the peers differ:

    - ``fallback="classic"`` (default): where ``m1 theta + m2 > pi`` the target cosine is
      ``cos - m2 sin(m2) - m3``, insightface's ``ArcFace`` rule (``cos > cos(pi - m)``
      else ``cos - m sin(pi - m)``); ``"monotonic"``: SphereFace's
      ``(-1)^k cos(m1 theta + m2) - 2k``, continuous and decreasing in ``theta``;
      ``"none"``: the raw ``cos(m1 theta + m2)``, as insightface's ``CombinedMarginLoss``.
    - ``easy_margin=True``: the margin only where ``cos > 0`` (plain ``cos`` elsewhere), as
      insightface's ``easy_margin``.
    - ``detach_margin=False`` (default): gradients through the margin. ``True``: the
      margin is a constant in the backward pass (``stop_gradient``), so the gradient is
      that of ``s cos`` without margin, as insightface's ``no_grad`` ArcFace branch.
    - ``cos = +-1``: ``sin theta`` is exactly 0 there, values and gradients finite (the
      true derivative of ``cos(theta + m)`` is infinite at ``cos = 1``; the part through
      ``sin theta`` is taken as 0).

    Args:
      cosines: ``[..., C]`` cosines between embeddings and class centres (e.g.
        ``ops.pairwise_cosine``); values are clipped into ``[-1, 1]`` for the margin.
      labels: ``[...]`` integer classes in ``[0, C)``.
      scale: the feature scale ``s`` > 0.
      m1: multiplicative angular margin (SphereFace), > 0.
      m2: additive angular margin in radians (ArcFace; pytorch-metric-learning's
        ``ArcFaceLoss`` takes degrees, 28.6 for 0.5 rad).
      m3: additive cosine margin (CosFace).
      easy_margin: apply the margin only to positive cosines.
      fallback: ``"classic"``, ``"monotonic"`` or ``"none"`` (above).
      detach_margin: insightface's gradient-without-margin.

    Returns:
      ``[..., C]`` float logits (at least float32).

    Raises:
      ValueError: ``labels`` has the wrong shape, concrete labels lie outside ``[0, C)``
        (traced ones there get no margin), ``scale`` or ``m1`` <= 0, unknown ``fallback``.
      TypeError: non-integer ``labels`` or non-numeric options.

    References:
      Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR
      2019; Wang et al., "CosFace", CVPR 2018; Liu et al., "SphereFace", CVPR 2017.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import losses
      >>> import numpy as np
      >>> cos, labels = jnp.array([[0.5, 0.5]]), jnp.array([0])
      >>> np.float64(losses.margin_logits(cos, labels)).round(4)  # ArcFace
      array([[ 1.5102, 32.    ]])
      >>> np.float64(losses.margin_logits(cos, labels, **losses.MARGIN_PRESETS["cosface"])).round(4)
      array([[ 9.6, 32. ]])
    """
    scale, m1, m2, m3 = _options(scale, m1, m2, m3, fallback)
    cos = jnp.asarray(cosines)
    if cos.ndim < 1:
        raise ValueError(f"`cosines` must be [..., C], got shape {cos.shape}")
    if not jnp.issubdtype(cos.dtype, jnp.floating) or jnp.finfo(cos.dtype).bits < 32:
        cos = cos.astype(jnp.float32)
    lab = check_labels(cos, labels)
    return _logits(cos, lab, scale, m1, m2, m3, bool(easy_margin), fallback, bool(detach_margin))


def _logits(
    cos: Array,
    labels: Array,
    scale: float,
    m1: float,
    m2: float,
    m3: float,
    easy_margin: bool,
    fallback: str,
    detach_margin: bool,
) -> Array:
    """``margin_logits`` without checks; labels outside ``[0, C)`` get no margin."""
    hit = jnp.arange(cos.shape[-1]) == labels[..., None]
    c_y = jnp.take_along_axis(cos, jnp.clip(labels, 0, cos.shape[-1] - 1)[..., None], -1)
    target = target_cosine(c_y, m1, m2, m3, easy_margin, fallback)
    if detach_margin:
        target = c_y + jax.lax.stop_gradient(target - c_y)
    return scale * jnp.where(hit, target, cos)


@export("losses.margin_softmax_loss")
def margin_softmax_loss(
    cosines: ArrayLike,
    labels: ArrayLike,
    *,
    scale: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    easy_margin: bool = False,
    fallback: str = "classic",
    detach_margin: bool = False,
    reduction: str = "mean",
) -> Array:
    """Cross-entropy of ``margin_logits``: ``logsumexp(logits) - logits[label]``.

    Args:
      cosines: ``[..., C]`` cosines; labels: ``[...]`` classes in ``[0, C)``.
      scale, m1, m2, m3, easy_margin, fallback, detach_margin: as ``margin_logits``.
      reduction: ``"mean"`` (default, a scalar), ``"sum"`` or ``"none"`` (``[...]``).

    Returns:
      The loss (float32 or wider). Traced labels outside ``[0, C)`` give NaN.

    Raises:
      As ``margin_logits``; ValueError for an unknown ``reduction``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import losses
      >>> cos = jnp.array([[0.5, 0.5]])
      >>> losses.margin_softmax_loss(cos, jnp.array([0]), m2=0.0).round(4)  # log 2
      Array(0.6931, dtype=float32)
      >>> losses.margin_softmax_loss(cos, jnp.array([0])).round(4)  # 32 - 1.5102 + ~0
      Array(30.4898, dtype=float32)
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"`reduction` must be 'none', 'mean' or 'sum', got {reduction!r}")
    logits = margin_logits(
        cosines,
        labels,
        scale=scale,
        m1=m1,
        m2=m2,
        m3=m3,
        easy_margin=easy_margin,
        fallback=fallback,
        detach_margin=detach_margin,
    )
    lab = jnp.asarray(labels).astype(jnp.int32)
    valid = (lab >= 0) & (lab < logits.shape[-1])
    picked = jnp.take_along_axis(logits, jnp.clip(lab, 0, logits.shape[-1] - 1)[..., None], -1)
    loss = jax.nn.logsumexp(logits, axis=-1) - picked[..., 0]
    loss = jnp.where(valid, loss, jnp.nan)
    if reduction == "mean":
        return jnp.sum(loss) / max(loss.size, 1)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss
