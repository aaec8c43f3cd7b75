"""A streaming confusion matrix: exact past 2^31 pixels, mergeable across devices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision._src.export import export
from jaxvision._src.metrics.confusion import (
    check_ignore_index,
    check_num_classes,
    confusion_matrix,
)
from jaxvision._src.metrics.report import segmentation_scores

# Counts are kept as two int32 limbs, value = high * 2**16 + low with 0 <= low < 2**16:
# adding an int32 batch count never overflows, a psum of `low` over up to 2**15 devices
# stays below 2**31, and `high` holds up to 2**31 - 1, so totals are exact to 2**47 pixels.
_BITS = 16
_MASK = (1 << _BITS) - 1
MAX_DEVICES = 1 << 15


def _normalize(low: jax.Array, high: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Moves the carry of ``low`` (any non-negative int32) into ``high``."""
    return low & _MASK, high + (low >> _BITS)


def _add_words(
    a: tuple[jax.Array, jax.Array], b: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    return _normalize(a[0] + b[0], a[1] + b[1])


def _words(cm: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Device counts ``[C, C + 1]`` or ``[N, C, C + 1]`` -> summed int32 ``(low, high)``.

    The split happens in ``cm``'s own dtype (no int64 -> int32 wrap); the sum over ``N``
    carries after every addition, so any number of matrices stays exact.
    """
    low = (cm & _MASK).astype(jnp.int32)
    high = (cm >> _BITS).astype(jnp.int32)
    if cm.ndim == 2:
        return low, high
    zero = jnp.zeros((), jnp.int32)
    return jax.lax.reduce((low, high), (zero, zero), _add_words, (0,))


_MAX_TOTAL = 1 << 47


def _host_words(cm: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Host counts -> summed int32 ``(low, high)``, checked: exact or an error."""
    if cm.dtype.kind == "i" and cm.size and cm.min() < 0:
        raise ValueError(f"cm holds negative counts (min {cm.min()})")
    if cm.size and int(cm.max()) >= _MAX_TOTAL:
        raise OverflowError(
            f"cm holds a count of {int(cm.max())}: ConfusionState holds less than 2**47 per cell"
        )
    cm = cm.astype(np.int64)
    low = (cm & _MASK).reshape(-1, *cm.shape[-2:]).sum(0)
    high = (cm >> _BITS).reshape(-1, *cm.shape[-2:]).sum(0) + (low >> _BITS)
    if high.size and int(high.max()) >= 1 << 31:
        raise OverflowError("the counts of cm sum to 2**47 or more in a cell, the most it holds")
    return jnp.asarray(low & _MASK, jnp.int32), jnp.asarray(high, jnp.int32)


@export("metrics.ConfusionState")
@flax.struct.dataclass
class ConfusionState:
    """Accumulated confusion counts of a dataset: an immutable pytree.

    Use it as an optax-style state: ``init`` once, ``update`` per batch (inside ``jit``),
    ``merge`` two states (e.g. from two evaluation workers), ``psum`` across devices inside
    ``shard_map``, then read the exact host counts with ``counts`` or all scores with
    ``compute``. Dataset-level aggregation (sum the counts, then score), as FCN and mmseg;
    unlike metrax, the result does not depend on the batch size or the order of batches.

    Counts are two int32 words per cell (``value = high * 2**16 + low``), exact up to
    ``2**47`` pixels per cell with JAX's default 32-bit integers.

    Attributes:
      low: ``[C, C + 1]`` int32, the count modulo ``2**16``.
      high: ``[C, C + 1]`` int32, the count divided by ``2**16``.
      ignore_index: static target label dropped by ``update`` (see ``confusion_matrix``).

    Example:
      >>> state = ConfusionState.init(19, ignore_index=255)
      >>> state = jax.jit(ConfusionState.update)(state, target, pred)
      >>> state.compute()["mean_iou"]
    """

    low: jax.Array
    high: jax.Array
    ignore_index: int | None = flax.struct.field(pytree_node=False, default=None)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return self.low.shape[-2]

    @classmethod
    def init(cls, num_classes: int, *, ignore_index: int | None = None) -> ConfusionState:
        """An empty state for ``num_classes`` classes.

        Args:
          num_classes: ``C``, a static int.
          ignore_index: target label to drop in every ``update``, or ``None``.
        """
        c = check_num_classes(num_classes)
        zeros = jnp.zeros((c, c + 1), jnp.int32)
        return cls(low=zeros, high=zeros, ignore_index=check_ignore_index(ignore_index))

    def update(self, target: jax.Array, pred: jax.Array) -> ConfusionState:
        """Adds the pixels of one batch of label maps (any shape, integer dtypes).

        Args:
          target: ``[...]`` ground-truth labels.
          pred: ``[...]`` predicted labels, same shape; at most ``2**31 - 1`` pixels.
        """
        cm = confusion_matrix(target, pred, self.num_classes, ignore_index=self.ignore_index)
        return self.add_matrix(cm)

    def add_matrix(self, cm: jax.Array) -> ConfusionState:
        """Adds an integer ``[C, C + 1]`` (or ``[N, C, C + 1]``) matrix of non-negative counts.

        Exact for every integer dtype and any ``N`` while each total stays below ``2**47``.
        Host arrays (NumPy, or concrete JAX arrays of 64-bit or ``uint32`` counts) are
        checked: a negative count raises ``ValueError``, a total of ``2**47`` or more
        ``OverflowError``. Inside ``jit`` the counts cannot be checked; 64-bit counts are
        split into the two words in their own dtype, so nothing wraps below ``2**47``.

        Args:
          cm: counts as returned by ``confusion_matrix``, e.g. computed per image.
        """
        c = self.num_classes
        host = not isinstance(cm, jax.Array)
        cm = np.asarray(cm) if host else cm
        if cm.shape[-2:] != (c, c + 1) or cm.ndim not in (2, 3):
            raise ValueError(f"cm must be [C, C + 1] or [N, C, C + 1] with C={c}, got {cm.shape}")
        if cm.dtype == np.bool_ or not np.issubdtype(cm.dtype, np.integer):
            raise TypeError(f"cm must hold integer counts, got dtype {cm.dtype}")
        wide = np.dtype(cm.dtype).itemsize == 8 or cm.dtype == np.uint32
        if host or (wide and not isinstance(cm, jax.core.Tracer)):
            low, high = _host_words(np.asarray(cm))
        else:
            low, high = _words(cm)
        low, high = _normalize(self.low + low, self.high + high)
        return self.replace(low=low, high=high)

    def merge(self, other: ConfusionState) -> ConfusionState:
        """The state of the union of both states' pixels (exact, order-independent)."""
        if not isinstance(other, ConfusionState):
            raise TypeError(f"other must be a ConfusionState, got {type(other).__name__}")
        if other.low.shape != self.low.shape or other.ignore_index != self.ignore_index:
            raise ValueError(
                "cannot merge states with different num_classes or ignore_index: "
                f"({self.num_classes}, {self.ignore_index}) vs "
                f"({other.num_classes}, {other.ignore_index})"
            )
        low, high = _normalize(self.low + other.low, self.high + other.high)
        return self.replace(low=low, high=high)

    def psum(self, axis_name: Any) -> ConfusionState:
        """Sums the states of all devices along ``axis_name`` (inside ``shard_map``).

        Gives the same counts as one device seeing every pixel, for up to ``2**15``
        devices on the axis.
        """
        low = jax.lax.psum(self.low, axis_name)
        high = jax.lax.psum(self.high, axis_name)
        low, high = _normalize(low, high)
        return self.replace(low=low, high=high)

    def matrix(self) -> jax.Array:
        """The counts as a float32 ``[C, C + 1]`` matrix, usable inside ``jit``.

        Exact below ``2**24`` per cell, relative error below ``6e-8`` above: fine for
        scores. For exact integers use :meth:`counts`.
        """
        return self.high.astype(jnp.float32) * float(1 << _BITS) + self.low.astype(jnp.float32)

    def counts(self) -> np.ndarray:
        """The exact counts as a host NumPy ``int64`` ``[C, C + 1]`` matrix."""
        low = np.asarray(jax.device_get(self.low), np.int64)
        high = np.asarray(jax.device_get(self.high), np.int64)
        return (high << _BITS) + low

    def compute(
        self, names: Sequence[str] | None = None, *, absent: float = float("nan")
    ) -> dict[str, Any]:
        """Scores of the accumulated counts (see ``segmentation_scores``), on the host.

        Reads the exact counts with :meth:`counts`, so call it outside ``jit``; inside
        ``jit``, use ``segmentation_scores(state.matrix(), ...)``.

        Args:
          names: scores to compute (``None``: all), as in ``segmentation_scores``.
          absent: the absent-class policy (NaN: undefined and excluded from means).

        Raises:
          ValueError: the state's ``ignore_index`` names a class in ``[0, C)``, which
            every score would use.
        """
        return segmentation_scores(
            self.counts(), names, absent=absent, ignore_index=self.ignore_index
        )
