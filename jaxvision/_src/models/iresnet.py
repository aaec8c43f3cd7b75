"""IResNet, insightface's face-recognition backbone, with the BN-Dropout-FC-BN 512-d head.

Reference: Duta et al., "Improved Residual Networks for Image and Video Recognition", ICPR
2020, as adapted by insightface (``recognition/arcface_torch/backbones/iresnet.py``): a
3x3 stride-1 stem with PReLU, pre-activation-style basic blocks
``BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN`` plus a 1x1 (stride) + BN
shortcut where the shape changes, the stride on each stage's first block, and the
embedding head ``BN -> Dropout -> flatten -> FC -> BN`` (the last BN's scale fixed to 1,
as insightface freezes it). Channels-last (NHWC); BatchNorm eps 1e-5 and momentum 0.9
(torch's 0.1) as insightface. PReLU is per channel, initialised 0.25 (torch's default).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export


@export("models.IResNetConfig")
@dataclasses.dataclass(frozen=True)
class IResNetConfig:
    """Shape of an IResNet.

    Attributes:
      depths: blocks per stage: ``(3, 4, 14, 3)`` iresnet50, ``(3, 13, 30, 3)`` iresnet100.
      widths: channels per stage, ``(64, 128, 256, 512)`` in insightface.
      stem_width: channels of the 3x3 stem, 64.
      embedding_dim: the embedding size, 512.
      input_size: the square input side (112 for the ArcFace crops); the FC sees
        ``input_size / 2^len(depths)`` squared positions.
      dropout: the head's dropout rate (insightface: 0; 0.4 in some configs).
    """

    depths: tuple[int, ...] = (3, 4, 14, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    embedding_dim: int = 512
    input_size: int = 112
    dropout: float = 0.0


class _PReLU(nnx.Module):
    def __init__(self, channels: int) -> None:
        self.slope = nnx.Param(jnp.full((channels,), 0.25, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x > 0, x, self.slope[...] * x)


def _bn(channels: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(channels, epsilon=1e-5, momentum=0.9, rngs=rngs)


def _conv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=k // 2, use_bias=False, rngs=rngs)


class _Block(nnx.Module):
    def __init__(self, cin: int, cout: int, stride: int, rngs: nnx.Rngs) -> None:
        self.bn1 = _bn(cin, rngs)
        self.conv1 = _conv(cin, cout, 3, 1, rngs)
        self.bn2 = _bn(cout, rngs)
        self.act = _PReLU(cout)
        self.conv2 = _conv(cout, cout, 3, stride, rngs)
        self.bn3 = _bn(cout, rngs)
        down = None
        if stride != 1 or cin != cout:
            down = nnx.Sequential(_conv(cin, cout, 1, stride, rngs), _bn(cout, rngs))
        self.down = nnx.data(down)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn3(self.conv2(self.act(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.down is None else self.down(x))


@export("models.IResNet")
class IResNet(nnx.Module):
    """IResNet embedding network: ``[B, S, S, 3]`` face crops -> ``[B, embedding_dim]``.

    Train / eval is module state (``model.train()``, ``model.eval()``: BatchNorm batch
    statistics and dropout on, or running statistics and no dropout). The embeddings are
    not normalised (``ops.l2_normalize`` / ``ops.pairwise_cosine`` do it).

    Args:
      config: an ``IResNetConfig`` (presets: ``iresnet50``, ``iresnet100``,
        ``iresnet_cpu``).
      rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` when ``config.dropout > 0``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxvision import models
      >>> net = models.IResNet(models.iresnet_cpu().config, rngs=nnx.Rngs(0))
      >>> net.eval()
      >>> net(jnp.zeros((2, 64, 64, 3))).shape
      (2, 128)
    """

    def __init__(self, config: IResNetConfig, *, rngs: nnx.Rngs) -> None:
        c = config
        stride = 2 ** len(c.depths)
        if c.input_size % stride:
            raise ValueError(f"`input_size` must be divisible by {stride}, got {c.input_size}")
        self.config = c
        self.stem = nnx.Sequential(
            _conv(3, c.stem_width, 3, 1, rngs), _bn(c.stem_width, rngs), _PReLU(c.stem_width)
        )
        blocks, cin = [], c.stem_width
        for depth, width in zip(c.depths, c.widths, strict=True):
            for i in range(depth):
                blocks.append(_Block(cin, width, 2 if i == 0 else 1, rngs))
                cin = width
        self.blocks = nnx.List(blocks)
        self.bn = _bn(cin, rngs)
        # Dropout holds an RNG stream only when it drops something.
        self.dropout = nnx.Dropout(c.dropout, rngs=rngs if c.dropout > 0 else None)
        side = c.input_size // stride
        self.fc = nnx.Linear(cin * side * side, c.embedding_dim, rngs=rngs)
        self.features = nnx.BatchNorm(
            c.embedding_dim, epsilon=1e-5, momentum=0.9, use_scale=False, rngs=rngs
        )

    def __call__(self, images: jax.Array) -> jax.Array:
        """``images``: ``[B, S, S, 3]`` (``S = config.input_size``) -> ``[B, D]``."""
        if images.ndim != 4 or images.shape[1:] != (self.config.input_size,) * 2 + (3,):
            s = self.config.input_size
            raise ValueError(f"`images` must be [B, {s}, {s}, 3], got shape {images.shape}")
        x = self.stem(images)
        for block in self.blocks:
            x = block(x)
        x = self.dropout(self.bn(x))
        return self.features(self.fc(x.reshape(x.shape[0], -1)))


@export("models.IResNetPreset")
@dataclasses.dataclass(frozen=True)
class IResNetPreset:
    """A named IResNet configuration; ``build(rngs=...)`` makes the module."""

    name: str
    config: IResNetConfig

    def build(self, *, rngs: nnx.Rngs) -> IResNet:
        """The ``IResNet`` of this preset."""
        return IResNet(self.config, rngs=rngs)


@export("models.iresnet50")
def iresnet50() -> IResNetPreset:
    """insightface's iresnet50: blocks (3, 4, 14, 3), 112 x 112 input, 512-d (43.6M params)."""
    return IResNetPreset("iresnet50", IResNetConfig(depths=(3, 4, 14, 3)))


@export("models.iresnet100")
def iresnet100() -> IResNetPreset:
    """insightface's iresnet100: blocks (3, 13, 30, 3), 112 x 112 input, 512-d (65.2M)."""
    return IResNetPreset("iresnet100", IResNetConfig(depths=(3, 13, 30, 3)))


@export("models.iresnet_cpu")
def iresnet_cpu(input_size: int = 64) -> IResNetPreset:
    """A small IResNet for CPU experiments: one block per stage, widths 16..128, 128-d."""
    return IResNetPreset(
        "iresnet_cpu",
        IResNetConfig(
            depths=(1, 1, 1, 1),
            widths=(16, 32, 64, 128),
            stem_width=16,
            embedding_dim=128,
            input_size=input_size,
        ),
    )
