"""Loading torchvision / timm ResNet weights into a pose model's backbone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.models.detr_weights import _Source, _torchvision_backbone
from jaxvision._src.models.pose import PoseModel


@export("models.load_torchvision_resnet_backbone")
def load_torchvision_resnet_backbone(
    model: PoseModel, state_dict: Mapping[str, Any], *, prefix: str = ""
) -> list[str]:
    """Copies a torchvision-named ResNet ``state_dict`` into ``model.backbone``, in place.

    The names are those of ``torchvision.models.resnet50().state_dict()`` (``conv1``,
    ``bn1``, ``layer{s}.{b}.conv{i}``, ``downsample.{0,1}``; timm uses the same), converted
    by DETR's converter (``models.load_official_detr`` shares it): OIHW kernels to HWIO,
    BatchNorm ``weight / bias / running_mean / running_var`` to ``scale / bias / mean /
    var``. The backbone's ``ResNetConfig`` must match the checkpoint's depths and widths.

    Args:
      model: a :class:`PoseModel` (``pose_resnet50`` for ImageNet ResNet-50 weights).
      state_dict: name -> array (torch tensors or NumPy arrays).
      prefix: prefix of the backbone's names (e.g. ``"backbone."``).

    Returns:
      The ``state_dict`` names that were not used (the ImageNet ``fc`` layer, ...).

    Raises:
      KeyError: a backbone array is missing; ValueError: a shape does not match.
    """
    src = _Source(state_dict)
    arrays: dict[tuple, Any] = {}
    _torchvision_backbone(src, prefix, model.config.backbone, arrays)
    graphdef, state = nnx.split(model)
    flat = dict(nnx.to_flat_state(state))
    for path, value in arrays.items():
        var = flat[path]
        if tuple(value.shape) != tuple(var.get_value().shape):
            raise ValueError(
                f"{'.'.join(map(str, path))}: checkpoint shape {value.shape} does not match "
                f"the model's {var.get_value().shape}"
            )
        var.set_value(jnp.asarray(value, var.get_value().dtype))
    nnx.update(model, state)
    del graphdef
    return src.unused()
