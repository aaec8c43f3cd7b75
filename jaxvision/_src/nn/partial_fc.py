"""The Partial FC classifier as an NNX module over ``parallel.partial_fc_loss``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.parallel.partial_fc import num_local_classes, partial_fc_loss


@export("nn.PartialFC")
class PartialFC(nnx.Module):
    """Margin-softmax classifier with class centres split over ``num_shards`` devices.

    The functional twin is ``parallel.partial_fc_loss`` (its docstring has the algorithm).
    ``centres`` is an ``nnx.Param`` ``[num_shards * K, D]`` (``K =
    num_local_classes(num_classes, num_shards)``, padding rows masked), initialised
    ``N(0, 0.01^2)`` as insightface's ``PartialFC_V2``. Place it with
    ``partition_spec`` (``P(axis_name, None)``, e.g. ``param_specs`` of
    ``parallel.data_parallel_step``); inside ``shard_map`` the module then sees its shard.
    With ``axis_name=None`` it is the ordinary (unsharded) margin-softmax classifier.

    Args:
      embedding_dim: ``D``.
      num_classes: ``C``.
      num_shards: devices along ``axis_name`` (1 with ``axis_name=None``).
      axis_name: the mesh axis, ``"model"``; ``None`` for one device.
      gather: all-gather embeddings and labels over the axis (see the twin).
      sample_rate: fraction of negative classes kept per device.
      margin: keyword options of ``losses.margin_logits`` (``scale``, ``m1``, ``m2``,
        ``m3``, ...), e.g. ``losses.MARGIN_PRESETS["cosface"]``; ArcFace by default.
      rngs: ``nnx.Rngs`` for the initial centres (keyword-only).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxvision import nn
      >>> head = nn.PartialFC(8, 10, axis_name=None, rngs=nnx.Rngs(0))
      >>> head.centres.shape, head(jnp.ones((4, 8)), jnp.arange(4)).shape
      ((10, 8), ())
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        num_shards: int = 1,
        axis_name: str | None = "model",
        gather: bool = True,
        sample_rate: float = 1.0,
        margin: dict | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        if axis_name is None and num_shards != 1:
            raise ValueError(f"`num_shards` must be 1 with axis_name=None, got {num_shards}")
        k = num_local_classes(num_classes, num_shards)
        self.num_classes = num_classes
        self.axis_name = axis_name
        self.gather = gather
        self.sample_rate = sample_rate
        self.margin = dict(margin or {})
        init = 0.01 * jax.random.normal(rngs.params(), (num_shards * k, embedding_dim))
        self.centres = nnx.Param(init.astype(jnp.float32))

    @property
    def partition_spec(self) -> PartitionSpec:
        """How ``centres`` is laid out: classes over ``axis_name``, width replicated."""
        return PartitionSpec(self.axis_name, None)

    def __call__(
        self, embeddings: ArrayLike, labels: ArrayLike, *, rng: jax.Array | None = None
    ) -> jax.Array:
        """``embeddings [b, D]``, ``labels [b]`` -> the scalar mean margin-softmax loss."""
        return partial_fc_loss(
            embeddings,
            labels,
            self.centres[...],
            num_classes=self.num_classes,
            axis_name=self.axis_name,
            gather=self.gather,
            sample_rate=self.sample_rate,
            rng=rng,
            **self.margin,
        )
