"""DETR presets (R50, R101, a tiny CPU model) and the optimizer split DETR trains with.

Reference: Carion et al., DETR, arXiv:2005.12872, section 4 and appendix A.4: AdamW with
lr 1e-4 for the transformer, 1e-5 for the backbone, weight decay 1e-4, gradient clipping
at global norm 0.1; the backbone's stem and first stage stay frozen.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.models.detr import DETR, DETRConfig
from jaxvision._src.models.resnet import ResNetConfig

FROZEN, BACKBONE, TRANSFORMER = "frozen", "backbone", "transformer"


def _with_backbone(
    config: DETRConfig, backbone: ResNetConfig, overrides: dict[str, Any]
) -> DETRConfig:
    backbone_overrides = overrides.pop("backbone", {})
    if isinstance(backbone_overrides, ResNetConfig):
        backbone = backbone_overrides
    else:
        backbone = dataclasses.replace(backbone, **backbone_overrides)
    return dataclasses.replace(config, backbone=backbone, **overrides)


@export("models.detr_r50_config")
def detr_r50_config(num_classes: int = 91, *, dc5: bool = False, **overrides: Any) -> DETRConfig:
    """DETR-R50 (DC5-R50 with ``dc5=True``): 6+6 layers, d_model 256, 100 queries.

    ``overrides`` replace ``DETRConfig`` fields; ``backbone=`` takes a ``ResNetConfig`` or
    a dict of its fields.
    """
    backbone = ResNetConfig(dilate_last=dc5)
    return _with_backbone(DETRConfig(num_classes=num_classes), backbone, dict(overrides))


@export("models.detr_r101_config")
def detr_r101_config(num_classes: int = 91, *, dc5: bool = False, **overrides: Any) -> DETRConfig:
    """DETR-R101: as ``detr_r50_config`` with ResNet-101 (depths 3, 4, 23, 3)."""
    backbone = ResNetConfig(depths=(3, 4, 23, 3), dilate_last=dc5)
    return _with_backbone(DETRConfig(num_classes=num_classes), backbone, dict(overrides))


@export("models.detr_tiny_config")
def detr_tiny_config(num_classes: int, **overrides: Any) -> DETRConfig:
    """A small DETR for tests and CPU demos on ~64x64 images.

    Backbone: 16-channel stem with max-pool, three basic-block stages of 32 / 64 / 128
    channels, trainable GroupNorm (it trains from scratch), total stride 16 (a 64x64
    image gives a 4x4 feature map); transformer d_model 64, 4 heads, 2 encoder and 2
    decoder layers, FFN 128, 16 queries, no dropout, auxiliary outputs on.
    """
    backbone = ResNetConfig(
        depths=(1, 1, 1),
        widths=(32, 64, 128),
        block="basic",
        stem_width=16,
        norm="group",
        frozen_stages=0,
    )
    config = DETRConfig(
        num_classes=num_classes,
        d_model=64,
        num_heads=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        ffn_dim=128,
        dropout=0.0,
        attention_dropout=0.0,
        num_queries=16,
    )
    return _with_backbone(config, backbone, dict(overrides))


@export("models.detr_r50")
def detr_r50(num_classes: int = 91, *, rngs: nnx.Rngs, dc5: bool = False, **overrides: Any) -> DETR:
    """DETR with a ResNet-50 backbone; see ``detr_r50_config``."""
    return DETR(detr_r50_config(num_classes, dc5=dc5, **overrides), rngs=rngs)


@export("models.detr_r101")
def detr_r101(
    num_classes: int = 91, *, rngs: nnx.Rngs, dc5: bool = False, **overrides: Any
) -> DETR:
    """DETR with a ResNet-101 backbone; see ``detr_r101_config``."""
    return DETR(detr_r101_config(num_classes, dc5=dc5, **overrides), rngs=rngs)


@export("models.detr_tiny")
def detr_tiny(num_classes: int, *, rngs: nnx.Rngs, **overrides: Any) -> DETR:
    """The tiny DETR for tests and CPU demos; see ``detr_tiny_config``."""
    return DETR(detr_tiny_config(num_classes, **overrides), rngs=rngs)


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _label(path: tuple[str, ...], frozen_stages: int) -> str:
    if not path or path[0] != "backbone":
        return TRANSFORMER
    part = path[1] if len(path) > 1 else ""
    if part.startswith("stem"):
        return FROZEN if frozen_stages >= 1 else BACKBONE
    if part == "stages" and len(path) > 2 and int(path[2]) < frozen_stages - 1:
        return FROZEN
    return BACKBONE


@export("models.detr_param_labels")
def detr_param_labels(params: Any, config: DETRConfig) -> Any:
    """Labels every leaf of a DETR parameter tree "frozen", "backbone" or "transformer".

    "frozen": the stem and the first ``config.backbone.frozen_stages - 1`` stages (DETR
    freezes the stem and layer1); "backbone": the rest of the ResNet; "transformer":
    everything else (projection, encoder, decoder, queries, heads). Works on any tree
    whose paths follow the model's attributes (``nnx.state(model, nnx.Param)``, its pure
    dict, or gradients of the same structure).

    Args:
      params: a pytree of DETR parameters.
      config: the model's ``DETRConfig``.

    Returns:
      A pytree of the same structure with string leaves.
    """
    frozen_stages = config.backbone.frozen_stages
    return jax.tree_util.tree_map_with_path(
        lambda path, _: _label(tuple(_key_name(p) for p in path), frozen_stages), params
    )


@export("models.detr_trainable_mask")
def detr_trainable_mask(params: Any, config: DETRConfig) -> Any:
    """Bool pytree: False for the frozen stem / first stage, True elsewhere."""
    labels = detr_param_labels(params, config)
    return jax.tree.map(lambda label: label != FROZEN, labels)


@export("models.detr_optimizer")
def detr_optimizer(
    config: DETRConfig,
    *,
    learning_rate: float | optax.Schedule = 1e-4,
    backbone_learning_rate: float | optax.Schedule = 1e-5,
    weight_decay: float = 1e-4,
    max_grad_norm: float | None = 0.1,
) -> optax.GradientTransformation:
    """DETR's optimizer: AdamW with a backbone learning rate, frozen stem, clipped grads.

    Frozen parameters get zero updates and are left out of the clipping norm (as when
    PyTorch does not compute their gradients). Use with
    ``nnx.Optimizer(model, detr_optimizer(model.config), wrt=nnx.Param)`` or on the
    ``nnx.Param`` state of a split model.
    """

    def labels(params: Any) -> Any:
        return detr_param_labels(params, config)

    def frozen(params: Any) -> Any:
        return jax.tree.map(lambda label: label == FROZEN, labels(params))

    parts: list[optax.GradientTransformation] = [optax.masked(optax.set_to_zero(), frozen)]
    if max_grad_norm is not None:
        parts.append(optax.clip_by_global_norm(max_grad_norm))
    transforms: dict[str, optax.GradientTransformation] = {
        TRANSFORMER: optax.adamw(learning_rate, weight_decay=weight_decay),
        BACKBONE: optax.adamw(backbone_learning_rate, weight_decay=weight_decay),
        FROZEN: optax.set_to_zero(),
    }
    parts.append(optax.multi_transform(transforms, labels))
    return optax.chain(*parts)
