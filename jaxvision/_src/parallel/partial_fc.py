"""Partial FC: a margin-softmax classifier whose class centres are sharded over devices.

An et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021.
The ``[C, D]`` centres are split along the classes over a mesh axis (``"model"``); each
device computes the cosines of the (gathered) batch against its own centres, and the
softmax normaliser is assembled from a max and a sum over the axis, so no device ever
holds all ``C`` logits or centres. Optionally each device keeps only a random subset of
its negative classes (the positives of the batch always kept).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array, lax
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.losses import margin
from jaxvision._src.ops import cosine


@export("parallel.num_local_classes")
def num_local_classes(num_classes: int, num_shards: int) -> int:
    """Centres per device, ``ceil(num_classes / num_shards)``; the last rows are padding.

    The sharded centres array is ``[num_shards * num_local_classes, D]``; rows past
    ``num_classes`` are padding classes that never enter the softmax.

    Examples:
      >>> from jaxvision import parallel
      >>> parallel.num_local_classes(1000, 8), parallel.num_local_classes(1001, 8)
      (125, 126)
    """
    for name, v in (("num_classes", num_classes), ("num_shards", num_shards)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"`{name}` must be a positive int, got {v!r}")
    return -(-num_classes // num_shards)


def _axis(axis_name: str | None) -> tuple[int, Array | int]:
    """(size, index) of the bound mesh axis, (1, 0) for ``None``; ValueError if unbound."""
    if axis_name is None:
        return 1, 0
    try:
        return lax.axis_size(axis_name), lax.axis_index(axis_name)
    except NameError:
        raise ValueError(
            f"axis_name {axis_name!r} is not bound: call partial_fc_loss inside "
            f"jax.shard_map over a mesh with an axis {axis_name!r} (or pass axis_name=None)"
        ) from None


def _sample(rng: Array, positive: Array, valid: Array, num_sample: int) -> Array:
    """``num_sample`` local class indices: every positive, then random valid negatives."""
    score = jax.random.uniform(rng, positive.shape)
    score = jnp.where(positive, 2.0, jnp.where(valid, score, -1.0))
    return jnp.sort(lax.top_k(score, num_sample)[1])


@export("parallel.partial_fc_loss")
def partial_fc_loss(
    embeddings: ArrayLike,
    labels: ArrayLike,
    centres: ArrayLike,
    *,
    num_classes: int,
    axis_name: str | None = "model",
    gather: bool = True,
    sample_rate: float = 1.0,
    rng: Array | None = None,
    scale: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    easy_margin: bool = False,
    fallback: str = "classic",
    detach_margin: bool = False,
) -> Array:
    """Mean margin-softmax loss of a classifier whose centres are sharded over ``axis_name``.

    Runs inside ``jax.shard_map`` with ``axis_name`` bound; ``centres`` is this device's
    shard ``[K, D]`` (rows ``i K .. (i + 1) K`` of the padded ``[n K, D]`` centres on
    device ``i``, ``K = num_local_classes(num_classes, n)``). Each device:

    1. with ``gather=True`` all-gathers the embeddings and labels of the axis (Partial
       FC's layout: every device has its own batch, one axis for data and classes); with
       ``gather=False`` the batch is already the same on every device of the axis (a
       ``("data", "model")`` mesh whose batch is split over ``"data"`` only);
    2. computes cosines ``[B, K]`` against its centres (``ops.pairwise_cosine``) and the
       margin at the labels that fall in its shard (``losses.margin_logits``' formula);
    3. takes the softmax normaliser from ``pmax`` of the row maxima (a constant for the
       gradient: it cancels) and ``psum`` of ``sum exp(logit - max)``, and the target
       logit from a ``psum``, so ``loss = log sum + max - target``.

    With ``sample_rate < 1`` each device keeps ``max(ceil(K sample_rate), min(K, B))``
    local classes: all positives of the batch in its shard, then uniformly drawn
    negatives (insightface's ``sample``); the loss is then the margin softmax over the
    kept classes, and unsampled centres get zero gradient. With ``sample_rate = 1`` the
    loss and every gradient equal those of ``losses.margin_softmax_loss`` over all ``C``
    classes on one device.

    Args:
      embeddings: ``[b, D]`` this device's embeddings (any norm; they are normalised).
      labels: ``[b]`` integer classes in ``[0, num_classes)``.
      centres: ``[K, D]`` this device's centres.
      num_classes: ``C``, the number of real classes (padding rows are masked).
      axis_name: the mesh axis the centres are split over; ``None``: one device, no
        collectives (``centres`` then holds all ``>= C`` rows).
      gather: all-gather embeddings and labels over ``axis_name`` first.
      sample_rate: fraction of negative classes kept per device, in ``(0, 1]``.
      rng: PRNG key for the sampling, the same on every device of the axis; required
        when ``sample_rate < 1``.
      scale, m1, m2, m3, easy_margin, fallback, detach_margin: as ``losses.margin_logits``.

    Returns:
      Scalar float32 loss, the mean over the (gathered) batch, the same on every device
      of the axis. Traced labels outside ``[0, C)`` give NaN.

    Raises:
      ValueError: ``axis_name`` is not bound here (a mesh without the axis), embedding and
        centre widths differ, the shard is too small for ``num_classes``, concrete labels
        lie outside ``[0, C)``, ``sample_rate`` outside ``(0, 1]`` or no ``rng`` for it.

    References:
      An et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW
      2021; Deng et al., "ArcFace", CVPR 2019.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxvision import parallel
      >>> emb, w = jnp.eye(2, 4), jnp.eye(3, 4)
      >>> loss = parallel.partial_fc_loss(emb, jnp.array([0, 1]), w, num_classes=3,
      ...                                 axis_name=None, m2=0.0, scale=1.0)
      >>> round(float(loss), 4)  # log(e + 2) - 1
      0.5514
    """
    scale, m1, m2, m3 = margin._options(scale, m1, m2, m3, fallback)
    if not (isinstance(sample_rate, (int, float)) and 0 < sample_rate <= 1):
        raise ValueError(f"`sample_rate` must be in (0, 1], got {sample_rate!r}")
    if sample_rate < 1 and rng is None:
        raise ValueError("`rng` is required when sample_rate < 1")
    w = jnp.asarray(centres)
    e = jnp.asarray(embeddings)
    if e.ndim != 2 or w.ndim != 2 or e.shape[-1] != w.shape[-1]:
        raise ValueError(
            f"`embeddings` [b, D] and `centres` [K, D] must be 2-D with the same width D, "
            f"got shapes {e.shape} and {w.shape}"
        )
    n, index = _axis(axis_name)
    k = w.shape[0]
    if n * k < num_classes:
        raise ValueError(
            f"`centres` holds {k} classes per device x {n} devices < num_classes={num_classes}"
        )
    lab = jnp.asarray(labels)
    if (
        not isinstance(lab, jax.core.Tracer)
        and lab.size
        and (lab.min() < 0 or lab.max() >= num_classes)
    ):
        raise ValueError(f"`labels` must lie in [0, {num_classes}), got {lab.min()}..{lab.max()}")
    if gather and axis_name is not None:
        e = lax.all_gather(e, axis_name, tiled=True)
        lab = lax.all_gather(lab, axis_name, tiled=True)
    lab = lab.astype(jnp.int32)
    local = lab - index * k
    on_shard = (local >= 0) & (local < k)
    classes = jnp.arange(k)
    valid = index * k + classes < num_classes
    if sample_rate < 1:
        num_sample = min(k, max(math.ceil(k * sample_rate), e.shape[0]))
        positive = jnp.any((classes[:, None] == local[None, :]) & on_shard[None, :], axis=1)
        kept = _sample(rng, positive, valid, num_sample)
        w, valid = w[kept], valid[kept]
        local = jnp.where(on_shard, jnp.argmax(kept[None, :] == local[:, None], axis=1), -1)
    cos = cosine.pairwise_cosine(e, w)
    local = jnp.where(on_shard, local, -1)
    logits = margin._logits(cos, local, scale, m1, m2, m3, easy_margin, fallback, detach_margin)
    return _sharded_cross_entropy(logits, local, valid, lab, num_classes, axis_name)


def _sharded_cross_entropy(
    logits: Array,
    local: Array,
    valid: Array,
    labels: Array,
    num_classes: int,
    axis_name: str | None,
) -> Array:
    """Mean over rows of ``logsumexp`` over the axis minus the target logit."""

    def total(x: Array) -> Array:
        return x if axis_name is None else lax.psum(x, axis_name)

    masked = jnp.where(valid, logits, -jnp.inf)
    # The max only steadies the exponentials (it cancels in the loss): no gradient.
    row_max = lax.stop_gradient(jnp.max(masked, axis=-1))
    if axis_name is not None:
        row_max = lax.pmax(row_max, axis_name)
    sum_exp = total(jnp.sum(jnp.where(valid, jnp.exp(logits - row_max[:, None]), 0.0), -1))
    hit = jnp.arange(logits.shape[-1]) == local[:, None]
    target = total(jnp.sum(jnp.where(hit, logits, 0.0), -1))
    loss = jnp.log(sum_exp) + row_max - target
    # A valid label is a real class of exactly one shard; counted with a psum, the mask is
    # the same on every device (so the loss is replicated over the axis).
    real = (local >= 0) & (labels < num_classes)
    ok = total(real.astype(jnp.int32)) == 1
    return jnp.mean(jnp.where(ok, loss, jnp.nan))
