"""Pooling modules: thin NNX wrappers over the adaptive pools and SPP of `ops.pooling`.

They hold no parameters and no state; they exist so that a model written as a tree of
modules (``nnx.Sequential``, a backbone with a head) can name its pooling layer, as
``torch.nn.AdaptiveMaxPool2d`` stands next to ``torch.nn.functional.adaptive_max_pool2d``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.ops.pooling import (
    _check_binning,
    _check_levels,
    _output_pair,
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    spatial_pyramid_pool,
)


def _checked_size(output_size: int | Sequence[int | None]) -> int | tuple[int | None, ...]:
    # Validated at construction with placeholder input sizes (``None`` keeps the input's).
    _output_pair(output_size, 1, 1)
    return output_size if isinstance(output_size, int) else tuple(output_size)


@export("nn.AdaptiveMaxPool2d")
class AdaptiveMaxPool2d(nnx.Module):
    """Adaptive max pooling to a fixed ``output_size``; twin of ``ops.adaptive_max_pool2d``.

    Args:
      output_size: ``oh`` or ``(oh, ow)``; ``None`` in the pair keeps that input size.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import nn
      >>> nn.AdaptiveMaxPool2d((2, 3))(jnp.ones((1, 7, 5, 4))).shape
      (1, 2, 3, 4)
    """

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        self.output_size = _checked_size(output_size)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """``x``: ``[N, H, W, C]`` -> ``[N, oh, ow, C]``."""
        return adaptive_max_pool2d(x, self.output_size)


@export("nn.AdaptiveAvgPool2d")
class AdaptiveAvgPool2d(nnx.Module):
    """Adaptive average pooling to a fixed ``output_size``; twin of ``ops.adaptive_avg_pool2d``.

    Args:
      output_size: ``oh`` or ``(oh, ow)``; ``None`` in the pair keeps that input size.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import nn
      >>> nn.AdaptiveAvgPool2d(1)(jnp.ones((2, 7, 5, 4))).shape
      (2, 1, 1, 4)
    """

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        self.output_size = _checked_size(output_size)

    def __call__(self, x: ArrayLike) -> jax.Array:
        """``x``: ``[N, H, W, C]`` -> ``[N, oh, ow, C]``."""
        return adaptive_avg_pool2d(x, self.output_size)


@export("nn.SpatialPyramidPooling")
class SpatialPyramidPooling(nnx.Module):
    """Spatial pyramid pooling head; twin of ``ops.spatial_pyramid_pool``.

    Args:
      levels: pyramid levels (non-empty, positive); ``(1, 2, 4)`` gives 21 bins.
      mode: ``"max"`` or ``"avg"``.
      binning: ``"adaptive"`` (PyTorch's bins, fixed length) or ``"sppnet"``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxvision import nn
      >>> spp = nn.SpatialPyramidPooling((1, 2, 4))
      >>> spp(jnp.ones((2, 9, 13, 3))).shape, spp(jnp.ones((2, 40, 31, 3))).shape
      ((2, 63), (2, 63))
    """

    def __init__(
        self, levels: Sequence[int] = (1, 2, 4), *, mode: str = "max", binning: str = "adaptive"
    ) -> None:
        if mode not in ("max", "avg"):
            raise ValueError(f"mode must be one of ('max', 'avg'), got {mode!r}")
        _check_binning(binning)
        self.levels = _check_levels(levels)
        self.mode = mode
        self.binning = binning

    def __call__(self, x: ArrayLike) -> jax.Array:
        """``x``: ``[N, H, W, C]`` -> ``[N, sum(n * n) * C]``."""
        return spatial_pyramid_pool(x, self.levels, mode=self.mode, binning=self.binning)
