"""ResNet backbones for DETR: frozen BatchNorm, optional dilated last stage (DC5).

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; the stride
sits on the 3x3 convolution of each bottleneck (torchvision's "v1.5", as in DETR and HF).
Images and features are channels-last (NHWC).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.models.conv_norm import conv_norm
from jaxvision._src.nn.frozen_batch_norm import FrozenBatchNorm

_BLOCKS = ("bottleneck", "basic")
_NORMS = ("frozen", "group", "batch")


@export("models.ResNetConfig")
@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    """Shape of a ResNet backbone.

    Attributes:
      depths: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
      widths: output channels per stage (bottleneck: 4x the inner width), e.g.
        ``(256, 512, 1024, 2048)``.
      block: ``"bottleneck"`` (ResNet-50/101) or ``"basic"`` (two 3x3 convolutions).
      stem_width: channels of the 7x7 stride-2 stem convolution.
      stem_pool: 3x3 stride-2 max pooling after the stem (total stride 4 before stage 1).
      dilate_last: DC5: the last stage keeps its input resolution and dilates its 3x3
        convolutions by 2 (total stride 16 instead of 32 for four stages).
      norm: ``"frozen"`` (BatchNorm with fixed statistics, for pretrained weights),
        ``"group"`` (trainable GroupNorm, for backbones trained from scratch) or
        ``"batch"`` (trainable BatchNorm, torchvision's momentum 0.1; batch statistics
        after ``model.train()``, running ones after ``model.eval()``; pose models).
      frozen_stages: how many leading parts the optimizer should freeze: 0 = none,
        1 = the stem, 2 = the stem and the first stage (DETR's choice), ...
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1024, 2048)
    block: str = "bottleneck"
    stem_width: int = 64
    stem_pool: bool = True
    dilate_last: bool = False
    norm: str = "frozen"
    frozen_stages: int = 2

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError(f"depths {self.depths} and widths {self.widths} must match")
        if self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {_BLOCKS}, got {self.block!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if self.block == "bottleneck" and any(w % 4 for w in self.widths):
            raise ValueError(f"bottleneck widths must be multiples of 4, got {self.widths}")

    @property
    def stride(self) -> int:
        """Total stride of the output feature map."""
        n = len(self.depths) - 1 - (1 if self.dilate_last and len(self.depths) > 1 else 0)
        return 2 * (2 if self.stem_pool else 1) * 2**n


def _conv(
    cin: int, cout: int, k: int, stride: int, dilation: int, dtype: jnp.dtype | None, rngs: nnx.Rngs
) -> nnx.Conv:
    pad = dilation * (k - 1) // 2
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=dilation,
        use_bias=False,
        kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        dtype=dtype,
        rngs=rngs,
    )


def _norm(channels: int, kind: str, dtype: jnp.dtype | None, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "frozen":
        return FrozenBatchNorm(channels)
    if kind == "batch":
        return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)
    return nnx.GroupNorm(channels, num_groups=min(8, channels), dtype=dtype, rngs=rngs)


class ResNetBlock(nnx.Module):
    """One residual block (bottleneck or basic), with a projection shortcut when needed."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        stride: int,
        dilation: int,
        block: str,
        norm: str,
        dtype: jnp.dtype | None,
        rngs: nnx.Rngs,
    ) -> None:
        if block == "bottleneck":
            mid = cout // 4
            self.convs = nnx.List(
                [
                    _conv(cin, mid, 1, 1, 1, dtype, rngs),
                    _conv(mid, mid, 3, stride, dilation, dtype, rngs),
                    _conv(mid, cout, 1, 1, 1, dtype, rngs),
                ]
            )
            self.norms = nnx.List([_norm(c, norm, dtype, rngs) for c in (mid, mid, cout)])
        else:
            self.convs = nnx.List(
                [
                    _conv(cin, cout, 3, stride, dilation, dtype, rngs),
                    _conv(cout, cout, 3, 1, dilation, dtype, rngs),
                ]
            )
            self.norms = nnx.List([_norm(c, norm, dtype, rngs) for c in (cout, cout)])
        if cin != cout or stride != 1:
            self.shortcut_conv = _conv(cin, cout, 1, stride, 1, dtype, rngs)
            self.shortcut_norm = _norm(cout, norm, dtype, rngs)
        else:
            self.shortcut_conv = nnx.data(None)
            self.shortcut_norm = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x``: ``[B, H, W, Cin]`` -> ``[B, H / stride, W / stride, Cout]``."""
        y = x
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            y = conv_norm(conv, norm, y)
            if i < last:
                y = jax.nn.relu(y)
        if self.shortcut_conv is not None:
            x = conv_norm(self.shortcut_conv, self.shortcut_norm, x)
        return jax.nn.relu(y + x)


@export("models.ResNet")
class ResNet(nnx.Module):
    """ResNet feature extractor returning the last stage's feature map.

    Args:
      config: the ``ResNetConfig``.
      in_channels: image channels.
      dtype: computation dtype (``None`` = float32).
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        config: ResNetConfig,
        *,
        in_channels: int = 3,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.config = config
        self.stem_conv = _conv(in_channels, config.stem_width, 7, 2, 1, dtype, rngs)
        self.stem_norm = _norm(config.stem_width, config.norm, dtype, rngs)
        stages = []
        cin = config.stem_width
        dilation = 1
        last = len(config.depths) - 1
        for s, (depth, cout) in enumerate(zip(config.depths, config.widths, strict=True)):
            stride = 1 if s == 0 else 2
            first_dilation = dilation
            if s == last and s > 0 and config.dilate_last:
                dilation, stride = dilation * stride, 1
                first_dilation = 1
            blocks = []
            for b in range(depth):
                blocks.append(
                    ResNetBlock(
                        cin if b == 0 else cout,
                        cout,
                        stride=stride if b == 0 else 1,
                        dilation=first_dilation if b == 0 else dilation,
                        block=config.block,
                        norm=config.norm,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
            stages.append(nnx.List(blocks))
            cin = cout
        self.stages = nnx.List(stages)

    @property
    def out_channels(self) -> int:
        return self.config.widths[-1]

    def __call__(self, images: jax.Array) -> jax.Array:
        """``images``: ``[B, H, W, C]`` -> ``[B, ceil(H / stride), ceil(W / stride), C_out]``."""
        x = jax.nn.relu(conv_norm(self.stem_conv, self.stem_norm, images))
        if self.config.stem_pool:
            x = jax.lax.reduce_window(
                x,
                np.array(-np.inf, x.dtype),
                jax.lax.max,
                (1, 3, 3, 1),
                (1, 2, 2, 1),
                ((0, 0), (1, 1), (1, 1), (0, 0)),
            )
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return x
