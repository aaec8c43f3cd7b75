"""SimpleBaseline pose networks with heatmap, integral, SimCC and RLE heads.

Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018: a ResNet
backbone, deconvolutions (4 x 4, stride 2, BatchNorm, ReLU) back to stride 4, a 1 x 1
convolution to ``K`` maps. The heads on top of it:

- ``"heatmap"``: the maps are Gaussian heatmaps (MSE), decoded by argmax / DARK.
- ``"integral"``: the maps are logits, decoded by ``keypoints.soft_argmax`` inside the
  network and trained with L1 (Sun et al., "Integral Human Pose Regression", ECCV 2018).
- ``"simcc"``: per-keypoint maps flattened and classified into ``W k`` x-bins and ``H k``
  y-bins (Li et al., SimCC, ECCV 2022), KL loss.
- ``"rle"``: global-pooled backbone features regress coordinates and sigmas, trained with
  ``losses.rle_loss`` through an ``nn.RealNVP`` flow used only in training (Li et al.,
  RLE, ICCV 2021); no deconvolutions.

Images are ``[B, H, W, 3]`` channels-last; keypoints come out in input pixels (continuous
coordinates, pixel ``i`` covering ``[i, i + 1)``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.keypoints.soft_argmax import soft_argmax
from jaxvision._src.models.resnet import ResNet, ResNetConfig
from jaxvision._src.nn.realnvp import RealNVP

HEADS = ("heatmap", "integral", "simcc", "rle")


@export("models.PoseConfig")
@dataclasses.dataclass(frozen=True)
class PoseConfig:
    """Shape of a SimpleBaseline pose network.

    Attributes:
      backbone: the ResNet (``norm="batch"`` to train it).
      head: ``"heatmap"`` | ``"integral"`` | ``"simcc"`` | ``"rle"``.
      num_keypoints: ``K`` (COCO: 17).
      input_size: ``(H, W)`` of the person crops (COCO: 256 x 192).
      deconv_layers: stride-2 deconvolutions after the backbone (3 for stride 32 -> 4).
      deconv_width: their channels (256 in SimpleBaseline).
      split_ratio: SimCC bins per input pixel ``k``.
      integral_debias: soft-argmax with the background debias (integral head).
    """

    backbone: ResNetConfig = ResNetConfig(norm="batch", frozen_stages=0)
    head: str = "heatmap"
    num_keypoints: int = 17
    input_size: tuple[int, int] = (256, 192)
    deconv_layers: int = 3
    deconv_width: int = 256
    split_ratio: float = 2.0
    integral_debias: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"`head` must be one of {HEADS}, got {self.head!r}")
        s = self.backbone.stride
        if any(d % s for d in self.input_size):
            raise ValueError(f"`input_size` {self.input_size} must be multiples of stride {s}")

    @property
    def map_stride(self) -> int:
        """Input pixels per output map pixel."""
        return self.backbone.stride // 2 ** (0 if self.head == "rle" else self.deconv_layers)

    @property
    def map_size(self) -> tuple[int, int]:
        return (self.input_size[0] // self.map_stride, self.input_size[1] // self.map_stride)


class _Deconv(nnx.Module):
    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.ConvTranspose(
            cin, cout, (4, 4), strides=2, padding="SAME", use_bias=False, rngs=rngs
        )
        self.norm = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.norm(self.conv(x)))


@export("models.PoseModel")
class PoseModel(nnx.Module):
    """SimpleBaseline with one of four heads (see the module docstring).

    ``model(images)`` returns a dict: ``"heatmaps" [B, h, w, K]`` (heatmap, integral),
    ``"keypoints" [B, K, 2]`` in input pixels (integral, rle), ``"simcc_x" [B, K, W k]``
    and ``"simcc_y" [B, K, H k]`` (simcc), ``"sigma_logits" [B, K, 2]`` (rle). BatchNorm
    uses batch statistics after ``model.train()`` and running ones after ``model.eval()``.

    Args:
      config: the :class:`PoseConfig`.
      rngs: parameter initialisation.
    """

    def __init__(self, config: PoseConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        self.backbone = ResNet(config.backbone, rngs=rngs)
        k = config.num_keypoints
        cin = self.backbone.out_channels
        if config.head == "rle":
            self.deconvs = nnx.List([])
            self.coords = nnx.Linear(cin, k * 2, kernel_init=nnx.initializers.zeros, rngs=rngs)
            self.sigmas = nnx.Linear(cin, k * 2, rngs=rngs)
            self.flow = RealNVP(rngs=rngs)
            return
        layers = []
        for _ in range(config.deconv_layers):
            layers.append(_Deconv(cin, config.deconv_width, rngs=rngs))
            cin = config.deconv_width
        self.deconvs = nnx.List(layers)
        self.final = nnx.Conv(cin, k, (1, 1), kernel_init=nnx.initializers.normal(1e-3), rngs=rngs)
        if config.head == "simcc":
            h, w = config.map_size
            ih, iw = config.input_size
            self.simcc_x = nnx.Linear(h * w, int(iw * config.split_ratio), rngs=rngs)
            self.simcc_y = nnx.Linear(h * w, int(ih * config.split_ratio), rngs=rngs)

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        """``images``: ``[B, H, W, 3]`` at ``config.input_size``."""
        cfg = self.config
        if images.ndim != 4 or tuple(images.shape[1:3]) != tuple(cfg.input_size):
            raise ValueError(f"`images` must be [B, {cfg.input_size}, C], got {images.shape}")
        x = self.backbone(images)
        b, k = images.shape[0], cfg.num_keypoints
        if cfg.head == "rle":
            pooled = jnp.mean(x, axis=(1, 2))
            size = jnp.array(cfg.input_size[::-1], x.dtype)
            # Coordinates regressed relative to the crop centre, in units of the crop size.
            xy = (self.coords(pooled).reshape(b, k, 2) + 0.5) * size
            return {"keypoints": xy, "sigma_logits": self.sigmas(pooled).reshape(b, k, 2)}
        for layer in self.deconvs:
            x = layer(x)
        maps = self.final(x)
        if cfg.head == "heatmap":
            return {"heatmaps": maps}
        if cfg.head == "integral":
            xy = soft_argmax(maps, debias=cfg.integral_debias) * cfg.map_stride
            return {"heatmaps": maps, "keypoints": xy}
        flat = jnp.moveaxis(maps, -1, 1).reshape(b, k, -1)
        return {"simcc_x": self.simcc_x(flat), "simcc_y": self.simcc_y(flat)}


@export("models.pose_resnet50")
def pose_resnet50(head: str = "heatmap", *, rngs: nnx.Rngs, **overrides) -> PoseModel:
    """SimpleBaseline ResNet-50 at 256 x 192 (COCO), 3 deconvolutions of 256, stride 4.

    Load ImageNet or pose weights into its backbone with
    :func:`models.load_torchvision_resnet_backbone`. ``overrides``: other
    :class:`PoseConfig` fields.
    """
    cfg = PoseConfig(head=head, **overrides)
    return PoseModel(cfg, rngs=rngs)


@export("models.pose_small_config")
def pose_small_config(
    head: str = "heatmap", input_size: tuple[int, int] = (64, 48), **overrides
) -> PoseConfig:
    """A small CPU preset: a 3-stage basic-block ResNet (32 / 64 / 128 channels, stride 16),
    2 deconvolutions of 64 (stride 4), person crops of ``input_size``.

    At 64 x 48 it has 0.37 M (RLE) to 0.55 M (SimCC) parameters and trains on the generated
    keypoint set in minutes on two CPU cores (``experiments/train_pose.py``).
    """
    backbone = ResNetConfig(
        depths=(1, 1, 1),
        widths=(32, 64, 128),
        block="basic",
        stem_width=32,
        norm="batch",
        frozen_stages=0,
    )
    fields = {
        "backbone": backbone,
        "head": head,
        "input_size": tuple(input_size),
        "deconv_layers": 2,
        "deconv_width": 64,
    } | overrides
    return PoseConfig(**fields)
