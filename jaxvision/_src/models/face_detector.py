"""A small RetinaFace-style face detector: conv backbone, FPN, per-level heads, 5 landmarks.

The layout is RetinaFace's (Deng et al., CVPR 2020) as in biubug6's MobileNet-0.25 port and
SCRFD (Guo et al., arXiv 2105.04714): three levels at strides 8, 16 and 32 with two square
anchors per cell, a top-down FPN, and on each level one 3x3 context convolution followed by
1x1 classification (one sigmoid logit per anchor), box (4) and landmark (10) heads. The
backbone is a plain stack of 3x3 conv-BN-ReLU stages (no depthwise convolutions, which XLA
runs slowly on CPU): 0.68 M parameters with the default widths (SCRFD-0.5GF: 0.57 M), so
that it trains on a CPU in minutes. Images are NHWC in ``[0, 1]``; outputs are flattened
in the anchor order of :func:`jaxvision.boxes.grid_anchors` (level, row, column, size).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.boxes.anchors import (
    RETINAFACE_ANCHOR_SIZES,
    RETINAFACE_STRIDES,
    check_strides_and_sizes,
    grid_anchors,
)
from jaxvision._src.export import export


@export("models.FaceDetectorConfig")
@dataclasses.dataclass(frozen=True)
class FaceDetectorConfig:
    """Shape of a :class:`FaceDetector`.

    Attributes:
      widths: output channels of the backbone stages at strides 2, 4, 8, 16, 32.
      depths: 3x3 convolutions per stage (the first has stride 2).
      fpn_width: channels of the FPN levels and of the heads.
      strides: strides of the detection levels (a suffix of 4, 8, 16, 32 ... of the
        backbone: the last ``len(strides)`` stages).
      anchor_sizes: per level, the square anchor sides in pixels.
      num_landmarks: landmarks per face (5: eyes, nose tip, mouth corners).
      prior_probability: initial face probability of every anchor (focal loss's 0.01).

    Examples:
      >>> FaceDetectorConfig().anchors_per_cell, FaceDetectorConfig().strides
      (2, (8, 16, 32))
    """

    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    depths: tuple[int, ...] = (1, 2, 2, 2, 2)
    fpn_width: int = 64
    strides: tuple[int, ...] = RETINAFACE_STRIDES
    anchor_sizes: tuple[tuple[float, ...], ...] = RETINAFACE_ANCHOR_SIZES
    num_landmarks: int = 5
    prior_probability: float = 0.01

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.depths) or not self.widths:
            raise ValueError(f"widths {self.widths} and depths {self.depths} must match")
        check_strides_and_sizes(self.strides, self.anchor_sizes)
        backbone = tuple(2 ** (i + 1) for i in range(len(self.widths)))
        if tuple(self.strides) != backbone[len(backbone) - len(self.strides) :]:
            raise ValueError(
                f"strides {self.strides} must be the last strides of the backbone {backbone}"
            )
        if not all(len(s) == len(self.anchor_sizes[0]) for s in self.anchor_sizes):
            raise ValueError(
                f"every level needs the same number of anchors, got {self.anchor_sizes}"
            )

    @property
    def anchors_per_cell(self) -> int:
        return len(self.anchor_sizes[0])


@export("models.FaceDetectorOutput")
class FaceDetectorOutput(NamedTuple):
    """Raw outputs of :class:`FaceDetector`, one row per anchor.

    Attributes:
      logits: ``[B, A]`` face logit of each anchor (sigmoid probability).
      box_deltas: ``[B, A, 4]`` box offsets (:func:`jaxvision.boxes.decode_boxes`).
      landmark_deltas: ``[B, A, K, 2]`` landmark offsets
        (:func:`jaxvision.keypoints.decode_landmarks`).

    Examples:
      >>> out = FaceDetectorOutput(jnp.zeros((1, 4)), jnp.zeros((1, 4, 4)), jnp.zeros((1, 4, 5, 2)))
      >>> out.landmark_deltas.shape
      (1, 4, 5, 2)
    """

    logits: jax.Array
    box_deltas: jax.Array
    landmark_deltas: jax.Array


class _ConvBN(nnx.Module):
    """3x3 (or 1x1) convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, *, k: int, stride: int, dtype, rngs: nnx.Rngs):
        self.conv = nnx.Conv(
            cin,
            cout,
            (k, k),
            strides=stride,
            padding="SAME",
            use_bias=False,
            kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
            dtype=dtype,
            rngs=rngs,
        )
        self.norm = nnx.BatchNorm(cout, momentum=0.9, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.norm(self.conv(x)))


def _head(cin: int, cout: int, bias: float, dtype, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        cin,
        cout,
        (1, 1),
        kernel_init=nnx.initializers.normal(0.01),
        bias_init=nnx.initializers.constant(bias),
        dtype=dtype,
        rngs=rngs,
    )


@export("models.FaceDetector")
class FaceDetector(nnx.Module):
    """RetinaFace-style single-shot face detector with boxes and landmarks (NNX).

    BatchNorm makes the model stateful: call ``model.train()`` before training steps and
    ``model.eval()`` before inference (running statistics).

    Args:
      config: the :class:`FaceDetectorConfig` (default: the CPU-sized one).
      in_channels: image channels.
      dtype: computation dtype (``None`` = float32).
      rngs: parameter initialisation (keyword-only).

    References:
      Deng et al., "RetinaFace: Single-shot Multi-level Face Localisation in the Wild",
      CVPR 2020; Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017.

    Examples:
      >>> config = FaceDetectorConfig(widths=(8,) * 5, depths=(1,) * 5, fpn_width=8)
      >>> model = FaceDetector(config, rngs=nnx.Rngs(0))
      >>> model.eval()
      >>> out = nnx.jit(lambda m, x: m(x))(model, jnp.zeros((1, 64, 64, 3)))
      >>> out.logits.shape, out.box_deltas.shape, out.landmark_deltas.shape
      ((1, 168), (1, 168, 4), (1, 168, 5, 2))
    """

    def __init__(
        self,
        config: FaceDetectorConfig | None = None,
        *,
        in_channels: int = 3,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        config = FaceDetectorConfig() if config is None else config
        self.config = config
        stages, cin = [], in_channels
        for width, depth in zip(config.widths, config.depths, strict=True):
            layers = [
                _ConvBN(
                    cin if i == 0 else width,
                    width,
                    k=3,
                    stride=2 if i == 0 else 1,
                    dtype=dtype,
                    rngs=rngs,
                )
                for i in range(depth)
            ]
            stages.append(nnx.List(layers))
            cin = width
        self.stages = nnx.List(stages)
        levels = config.widths[len(config.widths) - len(config.strides) :]
        f = config.fpn_width
        self.lateral = nnx.List(
            [_ConvBN(c, f, k=1, stride=1, dtype=dtype, rngs=rngs) for c in levels]
        )
        self.merge = nnx.List(
            [_ConvBN(f, f, k=3, stride=1, dtype=dtype, rngs=rngs) for _ in levels[:-1]]
        )
        self.context = nnx.List(
            [_ConvBN(f, f, k=3, stride=1, dtype=dtype, rngs=rngs) for _ in levels]
        )
        a, k = config.anchors_per_cell, config.num_landmarks
        prior = -math.log((1 - config.prior_probability) / config.prior_probability)
        self.cls_heads = nnx.List([_head(f, a, prior, dtype, rngs) for _ in levels])
        self.box_heads = nnx.List([_head(f, 4 * a, 0.0, dtype, rngs) for _ in levels])
        self.landmark_heads = nnx.List([_head(f, 2 * k * a, 0.0, dtype, rngs) for _ in levels])

    def anchors(self, image_size: int | tuple[int, int]) -> jax.Array:
        """``[A, 4]`` ``xyxy`` anchors of an ``image_size`` input, in the outputs' order."""
        return grid_anchors(image_size, strides=self.config.strides, sizes=self.config.anchor_sizes)

    def _features(self, images: jax.Array) -> list[jax.Array]:
        x, feats = images, []
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
            feats.append(x)
        feats = [lat(c) for lat, c in zip(self.lateral, feats[-len(self.lateral) :], strict=True)]
        # Top-down: each level adds the nearest-upsampled coarser one, then a 3x3 merge.
        for i in range(len(feats) - 2, -1, -1):
            up = jnp.repeat(jnp.repeat(feats[i + 1], 2, axis=1), 2, axis=2)
            feats[i] = self.merge[i](feats[i] + up)
        return feats

    def __call__(self, images: jax.Array) -> FaceDetectorOutput:
        """``images``: ``[B, H, W, C]`` in ``[0, 1]``, ``H`` and ``W`` divisible by the
        largest stride -> :class:`FaceDetectorOutput` with ``A`` anchors."""
        images = jnp.asarray(images)
        largest = max(self.config.strides)
        if images.ndim != 4:
            raise ValueError(f"`images` must be [B, H, W, C], got shape {images.shape}")
        if images.shape[1] % largest or images.shape[2] % largest:
            raise ValueError(
                f"`images` height and width {images.shape[1:3]} must be divisible by the "
                f"largest stride {largest}"
            )
        b, k = images.shape[0], self.config.num_landmarks
        logits, boxes, landmarks = [], [], []
        for i, feat in enumerate(self._features(images)):
            ctx = self.context[i](feat)
            logits.append(self.cls_heads[i](ctx).reshape(b, -1))
            boxes.append(self.box_heads[i](ctx).reshape(b, -1, 4))
            landmarks.append(self.landmark_heads[i](ctx).reshape(b, -1, k, 2))
        return FaceDetectorOutput(
            jnp.concatenate(logits, axis=1).astype(jnp.float32),
            jnp.concatenate(boxes, axis=1).astype(jnp.float32),
            jnp.concatenate(landmarks, axis=1).astype(jnp.float32),
        )
