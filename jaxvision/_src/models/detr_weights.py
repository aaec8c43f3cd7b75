"""Weight import for DETR from HF transformers and official facebookresearch state dicts.

Only NumPy arrays are needed: convert a PyTorch checkpoint with
``{k: v.numpy() for k, v in torch.load(path)["model"].items()}`` (official) or
``{k: v.numpy() for k, v in DetrForObjectDetection.from_pretrained(...).state_dict().items()}``
(HF) on a machine that has torch; jaxvision itself never imports torch.

Layouts: PyTorch convolutions ``[O, I, kh, kw]`` become ``[kh, kw, I, O]``; linear weights
``[out, in]`` become ``[in, out]``; the official ``in_proj_weight`` ``[3D, D]`` is split into
q, k, v. BatchNorm ``weight``, ``bias``, ``running_mean``, ``running_var`` become the frozen
``scale``, ``bias``, ``mean``, ``var``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.models.detr import DETR, DETRConfig
from jaxvision._src.models.resnet import ResNetConfig

Path = tuple[Any, ...]

_TIMM_RESNETS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (256, 512, 1024, 2048)),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (256, 512, 1024, 2048)),
}


class _Source:
    """Looks up arrays under alternative names and remembers which keys were used."""

    def __init__(self, state_dict: Mapping[str, Any]) -> None:
        self.arrays = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        self.used: set[str] = set()

    def has(self, *names: str) -> bool:
        return any(n in self.arrays for n in names)

    def get(self, *names: str) -> np.ndarray:
        for name in names:
            if name in self.arrays:
                self.used.add(name)
                return np.asarray(self.arrays[name], dtype=np.float32)
        raise KeyError(f"state_dict has none of {list(names)}")

    def unused(self) -> list[str]:
        return sorted(set(self.arrays) - self.used)


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))


def _bn(src: _Source, prefix: str, out: dict[Path, np.ndarray], path: Path) -> None:
    for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean")):
        out[path + (ours,)] = src.get(f"{prefix}.{theirs}")
    out[path + ("var",)] = src.get(f"{prefix}.running_var")


def _linear(src: _Source, prefixes: tuple[str, ...], out: dict[Path, np.ndarray], path: Path):
    out[path + ("kernel",)] = src.get(*(f"{p}.weight" for p in prefixes)).T
    out[path + ("bias",)] = src.get(*(f"{p}.bias" for p in prefixes))


def _layer_norm(src: _Source, prefix: str, out: dict[Path, np.ndarray], path: Path) -> None:
    out[path + ("scale",)] = src.get(f"{prefix}.weight")
    out[path + ("bias",)] = src.get(f"{prefix}.bias")


def _torchvision_backbone(
    src: _Source, prefix: str, config: ResNetConfig, out: dict[Path, np.ndarray]
) -> None:
    """torchvision / timm names: conv1, bn1, layer{s}.{b}.conv{i}, downsample.{0,1}."""
    out[("backbone", "stem_conv", "kernel")] = _conv(src.get(f"{prefix}conv1.weight"))
    _bn(src, f"{prefix}bn1", out, ("backbone", "stem_norm"))
    convs = 3 if config.block == "bottleneck" else 2
    for s, depth in enumerate(config.depths):
        for b in range(depth):
            p = f"{prefix}layer{s + 1}.{b}"
            path = ("backbone", "stages", s, b)
            for i in range(convs):
                out[path + ("convs", i, "kernel")] = _conv(src.get(f"{p}.conv{i + 1}.weight"))
                _bn(src, f"{p}.bn{i + 1}", out, path + ("norms", i))
            if src.has(f"{p}.downsample.0.weight"):
                out[path + ("shortcut_conv", "kernel")] = _conv(src.get(f"{p}.downsample.0.weight"))
                _bn(src, f"{p}.downsample.1", out, path + ("shortcut_norm",))


def _hf_resnet_backbone(
    src: _Source, prefix: str, config: ResNetConfig, out: dict[Path, np.ndarray]
) -> None:
    """HF ResNet names: embedder.embedder, encoder.stages.{s}.layers.{b}.layer.{i}, shortcut."""
    stem = f"{prefix}embedder.embedder"
    out[("backbone", "stem_conv", "kernel")] = _conv(src.get(f"{stem}.convolution.weight"))
    _bn(src, f"{stem}.normalization", out, ("backbone", "stem_norm"))
    convs = 3 if config.block == "bottleneck" else 2
    for s, depth in enumerate(config.depths):
        for b in range(depth):
            p = f"{prefix}encoder.stages.{s}.layers.{b}"
            path = ("backbone", "stages", s, b)
            for i in range(convs):
                w = src.get(f"{p}.layer.{i}.convolution.weight")
                out[path + ("convs", i, "kernel")] = _conv(w)
                _bn(src, f"{p}.layer.{i}.normalization", out, path + ("norms", i))
            if src.has(f"{p}.shortcut.convolution.weight"):
                w = src.get(f"{p}.shortcut.convolution.weight")
                out[path + ("shortcut_conv", "kernel")] = _conv(w)
                _bn(src, f"{p}.shortcut.normalization", out, path + ("shortcut_norm",))


@dataclasses.dataclass(frozen=True)
class _Names:
    """Where a checkpoint family keeps the transformer and heads (one table per family).

    Each ``(ours, theirs)`` pair maps a submodule of our layer to the names it has there;
    a tuple of names lists alternatives (transformers 5 first, then 4).
    """

    encoder: str
    decoder: str
    cross_attn: str
    encoder_norms: tuple[str, str]
    decoder_norms: tuple[str, str, str]
    linear1: tuple[str, ...]
    linear2: tuple[str, ...]
    out_proj: tuple[str, ...]
    fused_qkv: bool
    encoder_norm: str | None
    decoder_norm: str
    class_head: str
    box_head: str


_HF_NAMES = _Names(
    encoder="model.encoder.layers",
    decoder="model.decoder.layers",
    cross_attn="encoder_attn",
    encoder_norms=("self_attn_layer_norm", "final_layer_norm"),
    decoder_norms=("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"),
    linear1=("mlp.fc1", "fc1"),
    linear2=("mlp.fc2", "fc2"),
    out_proj=("o_proj", "out_proj"),
    fused_qkv=False,
    encoder_norm=None,
    decoder_norm="model.decoder.layernorm",
    class_head="class_labels_classifier",
    box_head="bbox_predictor",
)
_OFFICIAL_NAMES = _Names(
    encoder="transformer.encoder.layers",
    decoder="transformer.decoder.layers",
    cross_attn="multihead_attn",
    encoder_norms=("norm1", "norm2"),
    decoder_norms=("norm1", "norm2", "norm3"),
    linear1=("linear1",),
    linear2=("linear2",),
    out_proj=("out_proj",),
    fused_qkv=True,
    encoder_norm="transformer.encoder.norm",
    decoder_norm="transformer.decoder.norm",
    class_head="class_embed",
    box_head="bbox_embed",
)


def _attention(
    src: _Source, names: _Names, p: str, d: int, out: dict[Path, np.ndarray], path: Path
) -> None:
    if names.fused_qkv:  # torch.nn.MultiheadAttention: in_proj_weight [3D, D]
        w, b = src.get(f"{p}.in_proj_weight"), src.get(f"{p}.in_proj_bias")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[path + (name, "kernel")] = w[j * d : (j + 1) * d].T
            out[path + (name, "bias")] = b[j * d : (j + 1) * d]
    else:
        for name in ("q_proj", "k_proj", "v_proj"):
            _linear(src, (f"{p}.{name}",), out, path + (name,))
    _linear(src, tuple(f"{p}.{n}" for n in names.out_proj), out, path + ("out_proj",))


def _transformer(src: _Source, names: _Names, cfg: DETRConfig, out: dict[Path, np.ndarray]) -> None:
    """The encoder and decoder layers, the final norms and both heads."""
    d = cfg.d_model

    def ffn(p: str, path: Path) -> None:
        _linear(src, tuple(f"{p}.{n}" for n in names.linear1), out, path + ("ffn", "linear1"))
        _linear(src, tuple(f"{p}.{n}" for n in names.linear2), out, path + ("ffn", "linear2"))

    for i in range(cfg.num_encoder_layers):
        p, path = f"{names.encoder}.{i}", ("encoder_layers", i)
        _attention(src, names, f"{p}.self_attn", d, out, path + ("self_attn",))
        ffn(p, path)
        for n, theirs in enumerate(names.encoder_norms, start=1):
            _layer_norm(src, f"{p}.{theirs}", out, path + (f"norm{n}",))
    if cfg.normalize_before and names.encoder_norm is not None:
        _layer_norm(src, names.encoder_norm, out, ("encoder_norm",))
    for i in range(cfg.num_decoder_layers):
        p, path = f"{names.decoder}.{i}", ("decoder_layers", i)
        _attention(src, names, f"{p}.self_attn", d, out, path + ("self_attn",))
        _attention(src, names, f"{p}.{names.cross_attn}", d, out, path + ("cross_attn",))
        ffn(p, path)
        for n, theirs in enumerate(names.decoder_norms, start=1):
            _layer_norm(src, f"{p}.{theirs}", out, path + (f"norm{n}",))
    _layer_norm(src, names.decoder_norm, out, ("decoder_norm",))
    _linear(src, (names.class_head,), out, ("class_head",))
    for j in range(3):
        _linear(src, (f"{names.box_head}.layers.{j}",), out, ("box_head", "layers", j))


def _build(config: DETRConfig, arrays: dict[Path, np.ndarray], seed: int) -> DETR:
    """A DETR whose parameters and frozen statistics are ``arrays`` (checked shapes)."""
    abstract = nnx.eval_shape(lambda: DETR(config, rngs=nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)
    flat = list(nnx.to_flat_state(state))
    rng_keys = jax.random.split(jax.random.key(seed), max(1, len(flat)))
    missing = []
    for i, (path, var) in enumerate(flat):
        spec = var.get_value()
        if isinstance(var, nnx.RngKey):
            var.set_value(rng_keys[i])
        elif isinstance(var, nnx.RngCount):
            var.set_value(jnp.zeros(spec.shape, spec.dtype))
        elif path in arrays:
            value = arrays.pop(path)
            if value.shape != spec.shape:
                name = ".".join(map(str, path))
                raise ValueError(
                    f"{name}: checkpoint shape {value.shape} does not match the model's "
                    f"{spec.shape}; is the config right?"
                )
            var.set_value(jnp.asarray(value, spec.dtype))
        else:
            missing.append(".".join(map(str, path)))
    if missing:
        raise ValueError(f"the state_dict does not provide {missing[:10]} ({len(missing)} in all)")
    if arrays:
        extra = [".".join(map(str, p)) for p in arrays]
        raise ValueError(f"converted arrays the model does not have: {extra[:10]}")
    return nnx.merge(graphdef, state)


def _finish(src: _Source, strict: bool) -> None:
    if strict and src.unused():
        rest = src.unused()
        raise ValueError(f"unexpected keys in state_dict: {rest[:10]} ({len(rest)} in all)")


def _check_state_dict(state_dict: Any) -> None:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must map names to arrays, got {type(state_dict).__name__}")


@export("models.detr_config_from_hf")
def detr_config_from_hf(config: Mapping[str, Any]) -> DETRConfig:
    """The ``DETRConfig`` equivalent to an HF ``DetrConfig.to_dict()``.

    Supports ResNet backbones, either HF's own (``backbone_config`` of model type
    "resnet", no ``downsample_in_bottleneck``) or timm's (``use_timm_backbone`` with
    ``backbone`` "resnet18/34/50/101", ``dilation`` for DC5).
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be DetrConfig.to_dict(), got {type(config).__name__}")
    c = dict(config)
    if c.get("encoder_attention_heads") != c.get("decoder_attention_heads"):
        raise ValueError("encoder and decoder must have the same number of heads")
    if c.get("encoder_ffn_dim") != c.get("decoder_ffn_dim"):
        raise ValueError("encoder and decoder must have the same FFN width")
    if c.get("activation_function", "relu") != "relu":
        raise ValueError(f"only relu is supported, got {c.get('activation_function')!r}")
    if c.get("use_timm_backbone", False):
        name = c.get("backbone", "resnet50")
        if name not in _TIMM_RESNETS:
            raise ValueError(f"timm backbone must be one of {sorted(_TIMM_RESNETS)}, got {name!r}")
        block, depths, widths = _TIMM_RESNETS[name]
        backbone = ResNetConfig(
            depths=depths, widths=widths, block=block, dilate_last=bool(c.get("dilation"))
        )
    else:
        bc = c.get("backbone_config") or {}
        if bc.get("model_type") != "resnet":
            raise ValueError(f"backbone must be a ResNet, got {bc.get('model_type')!r}")
        if bc.get("downsample_in_bottleneck") or bc.get("downsample_in_first_stage"):
            raise ValueError("ResNets that downsample in the 1x1 or in stage 1 are not supported")
        if bc.get("out_features", ["stage4"])[-1] != f"stage{len(bc['depths'])}":
            raise ValueError("DETR uses the last ResNet stage (out_features=['stage4'])")
        backbone = ResNetConfig(
            depths=tuple(bc["depths"]),
            widths=tuple(bc["hidden_sizes"]),
            block="bottleneck" if bc.get("layer_type", "bottleneck") == "bottleneck" else "basic",
            stem_width=bc.get("embedding_size", 64),
        )
    num_labels = len(c["id2label"]) if c.get("id2label") else c.get("num_labels", 91)
    return DETRConfig(
        num_classes=num_labels,
        backbone=backbone,
        d_model=c["d_model"],
        num_heads=c["encoder_attention_heads"],
        num_encoder_layers=c["encoder_layers"],
        num_decoder_layers=c["decoder_layers"],
        ffn_dim=c["encoder_ffn_dim"],
        dropout=c.get("dropout", 0.1),
        attention_dropout=c.get("attention_dropout", 0.0),
        num_queries=c["num_queries"],
        position_encoding=c.get("position_embedding_type", "sine"),
        aux_loss=bool(c.get("auxiliary_loss", False)),
        in_channels=c.get("num_channels", 3),
    )


@export("models.load_hf_detr")
def load_hf_detr(
    state_dict: Mapping[str, Any],
    config: Mapping[str, Any] | DETRConfig,
    *,
    strict: bool = True,
    seed: int = 0,
) -> DETR:
    """Builds a jaxvision ``DETR`` from an HF ``DetrForObjectDetection`` state dict.

    Accepts the names of transformers 5 (``o_proj``, ``mlp.fc1``) and 4 (``out_proj``,
    ``fc1``), with HF ResNet or timm backbone names. HF's ``auxiliary_loss=True`` feeds
    each decoder layer the LayerNorm-ed output of the previous one, unlike the official
    DETR whose checkpoints HF converted; jaxvision keeps the official computation, so the
    final logits and boxes match HF when ``auxiliary_loss`` is False (HF's default).

    Args:
      state_dict: HF parameter names -> arrays (NumPy, or anything ``np.asarray`` reads).
      config: ``DetrConfig.to_dict()`` (or a ready ``DETRConfig``).
      strict: raise on keys the model does not use.
      seed: seed of the dropout streams.

    Returns:
      The model; call ``model(images, pixel_mask)`` with ``images`` ``[B, H, W, 3]``
      (normalised as HF's image processor does) and ``pixel_mask`` ``[B, H, W]``.

    Example::

        from transformers import DetrForObjectDetection  # on a machine with torch
        hf = DetrForObjectDetection.from_pretrained("facebook/detr-resnet-50")
        sd = {k: v.numpy() for k, v in hf.state_dict().items()}
        model = jaxvision.models.load_hf_detr(sd, hf.config.to_dict())
    """
    _check_state_dict(state_dict)
    cfg = config if isinstance(config, DETRConfig) else detr_config_from_hf(config)
    src = _Source(state_dict)
    out: dict[Path, np.ndarray] = {}
    prefixes = ("model.backbone.model.", "model.backbone.conv_encoder.model.")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in src.arrays)), None)
    if prefix is None:
        raise ValueError(f"no backbone keys under {prefixes} in state_dict")
    if src.has(f"{prefix}conv1.weight"):
        _torchvision_backbone(src, prefix, cfg.backbone, out)
    else:
        _hf_resnet_backbone(src, prefix, cfg.backbone, out)
    proj = src.get("model.input_projection.weight")
    out[("input_proj", "kernel")] = proj.reshape(proj.shape[0], -1).T
    out[("input_proj", "bias")] = src.get("model.input_projection.bias")
    out[("query_embed",)] = src.get("model.query_position_embeddings.weight")
    if cfg.position_encoding == "learned":
        for ours, theirs in (("row_embed", "row_embeddings"), ("col_embed", "column_embeddings")):
            out[("position_encoding", ours)] = src.get(
                f"model.position_embedding.{theirs}.weight",
                f"model.backbone.position_embedding.{theirs}.weight",
            )

    _transformer(src, _HF_NAMES, cfg, out)
    _finish(src, strict)
    return _build(cfg, out, seed)


@export("models.load_official_detr")
def load_official_detr(
    state_dict: Mapping[str, Any],
    config: DETRConfig,
    *,
    strict: bool = True,
    seed: int = 0,
) -> DETR:
    """Builds a jaxvision ``DETR`` from a facebookresearch/detr checkpoint's ``"model"`` dict.

    Key names of the official code (``backbone.0.body.layer1.0.conv1.weight``,
    ``transformer.encoder.layers.0.self_attn.in_proj_weight``, ``class_embed``,
    ``bbox_embed.layers.0``, ``query_embed``, ``input_proj``). The official COCO
    checkpoints have 91 classes plus no-object: ``config = detr_r50_config(91)`` (or
    ``dc5=True`` / ``detr_r101_config`` to match the file).

    Example::

        import torch  # on a machine with torch
        ckpt = torch.load("detr-r50-e632da11.pth", map_location="cpu")
        sd = {k: v.numpy() for k, v in ckpt["model"].items()}
        model = jaxvision.models.load_official_detr(sd, jaxvision.models.detr_r50_config(91))
    """
    _check_state_dict(state_dict)
    if not isinstance(config, DETRConfig):
        raise TypeError(f"config must be a DETRConfig, got {type(config).__name__}")
    cfg = config
    src = _Source(state_dict)
    out: dict[Path, np.ndarray] = {}
    _torchvision_backbone(src, "backbone.0.body.", cfg.backbone, out)
    proj = src.get("input_proj.weight")
    out[("input_proj", "kernel")] = proj.reshape(proj.shape[0], -1).T
    out[("input_proj", "bias")] = src.get("input_proj.bias")
    out[("query_embed",)] = src.get("query_embed.weight")
    if cfg.position_encoding == "learned":
        out[("position_encoding", "row_embed")] = src.get("backbone.1.row_embed.weight")
        out[("position_encoding", "col_embed")] = src.get("backbone.1.col_embed.weight")
    _transformer(src, _OFFICIAL_NAMES, cfg, out)
    _finish(src, strict)
    return _build(cfg, out, seed)
