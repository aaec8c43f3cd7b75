"""DETR: a ResNet backbone, a transformer encoder-decoder and set-prediction heads.

Reference: Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020,
arXiv:2005.12872. Conventions (those of the official code and HF transformers):
images are channels-last ``[B, H, W, 3]`` with a ``pixel_mask`` ``[B, H, W]`` (True = real
pixel); the class head scores ``C + 1`` classes with "no object" LAST; boxes are
``(cx, cy, w, h)`` in ``[0, 1]`` relative to the padded image's real extent after sigmoid.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.export import export
from jaxvision._src.models.resnet import ResNet, ResNetConfig
from jaxvision._src.models.transformer import DecoderLayer, EncoderLayer
from jaxvision._src.nn.position_encoding import LearnedPositionEncoding, SinePositionEncoding
from jaxvision._src.ops.position_encoding import downsample_pixel_mask

_POSITION_ENCODINGS = ("sine", "learned")


@export("models.DETRConfig")
@dataclasses.dataclass(frozen=True)
class DETRConfig:
    """Every size and option of a DETR model (the presets fill it in).

    Attributes:
      num_classes: object classes ``C``; the class head has ``C + 1`` outputs.
      backbone: the ``ResNetConfig``.
      d_model: transformer width.
      num_heads: attention heads.
      num_encoder_layers, num_decoder_layers: transformer depth.
      ffn_dim: feed-forward hidden width.
      dropout: dropout after attention and in the feed-forward block (training only).
      attention_dropout: dropout on attention weights (training only).
      num_queries: learned object queries ``Q``.
      num_query_groups: ``G``, query groups in training (Group DETR, Chen et al., ICCV
        2023): ``G * Q`` learned queries, self-attention only within a group of ``Q``,
        each group matched to the targets on its own (``detr_loss(query_groups=G)``), so
        every target gets ``G`` positive queries per step. In eval mode only group 0
        (the first ``Q`` queries) runs, so inference is unchanged. 1: plain DETR.
      normalize_before: pre-norm layers (post-norm, DETR's default, when False).
      position_encoding: ``"sine"`` (respects the padding mask) or ``"learned"``.
      max_learned_positions: table size of the learned encoding (feature-map side).
      aux_loss: also return the heads' outputs of decoder layers ``0..L-2`` under "aux".
      in_channels: image channels.
      dtype: computation dtype (``None``: float32; ``jnp.bfloat16`` for mixed
        precision); parameters stay float32 and outputs are float32.
    """

    num_classes: int = 91
    backbone: ResNetConfig = dataclasses.field(default_factory=ResNetConfig)
    d_model: int = 256
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    ffn_dim: int = 2048
    dropout: float = 0.1
    attention_dropout: float = 0.1
    num_queries: int = 100
    num_query_groups: int = 1
    normalize_before: bool = False
    position_encoding: str = "sine"
    max_learned_positions: int = 50
    aux_loss: bool = True
    in_channels: int = 3
    dtype: jnp.dtype | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.d_model % self.num_heads or self.d_model % 4:
            raise ValueError(
                f"d_model={self.d_model} must be a multiple of 4 and of num_heads={self.num_heads}"
            )
        if self.num_decoder_layers < 1 or self.num_encoder_layers < 0 or self.num_queries < 1:
            raise ValueError("need >= 1 decoder layer, >= 0 encoder layers and >= 1 query")
        if self.num_query_groups < 1:
            raise ValueError(f"num_query_groups must be >= 1, got {self.num_query_groups}")
        if self.position_encoding not in _POSITION_ENCODINGS:
            raise ValueError(
                f"position_encoding must be one of {_POSITION_ENCODINGS}, "
                f"got {self.position_encoding!r}"
            )


class BoxHead(nnx.Module):
    """3-layer MLP with ReLU, then sigmoid: ``[..., D]`` -> ``[..., 4]`` (cx, cy, w, h)."""

    def __init__(self, d: int, dtype: jnp.dtype | None, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(d, out, dtype=dtype, rngs=rngs) for out in (d, d, 4)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = jax.nn.relu(x)
        return jax.nn.sigmoid(x.astype(jnp.float32))


@export("models.DETR")
class DETR(nnx.Module):
    """DETR object detector in Flax NNX.

    Call: ``model(images, pixel_mask)``. Train / eval is module state, as everywhere in
    Flax NNX: the model is built in eval mode; ``model.train()`` turns dropout on (keys
    from the ``dropout`` stream, or ``default`` when absent, of the ``rngs`` given at
    construction) and ``model.eval()`` off again. The frozen BatchNorm statistics never
    change, so the model has no other train/eval difference. Under ``nnx.split`` the mode
    is part of the graph definition: split after setting it.

    Padded pixels (``pixel_mask`` False) are set to 0 before the backbone, so the images
    are zero-padded after normalisation, as official DETR and HF pad; the output then
    depends on the real pixels, the mask and the padded canvas size (see ``docs/detr.md``),
    never on what the padded pixels held.

    Returns a dict: ``"logits"`` ``[B, Q, C + 1]`` (no-object last), ``"boxes"``
    ``[B, Q, 4]`` (cx, cy, w, h in [0, 1]), both float32 (in train mode with
    ``config.num_query_groups = G > 1``: ``[B, G * Q, ...]``, group-major), and, when
    ``config.aux_loss``,
    ``"aux"``: a tuple of ``{"logits", "boxes"}`` for decoder layers ``0..L-2``.
    Intermediate decoder outputs pass through the shared final LayerNorm before the heads,
    as in the official implementation.

    Args:
      config: the ``DETRConfig``.
      rngs: parameter initialisation and dropout keys.

    See docs/detr.md for a forward pass and a training step (a DETR takes tens of seconds
    to build on a CPU, too long for a docstring example).
    """

    def __init__(self, config: DETRConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        c, d, dt = config, config.d_model, config.dtype
        self.backbone = ResNet(c.backbone, in_channels=c.in_channels, dtype=dt, rngs=rngs)
        self.input_proj = nnx.Linear(self.backbone.out_channels, d, dtype=dt, rngs=rngs)
        if c.position_encoding == "sine":
            self.position_encoding = SinePositionEncoding(d // 2, dtype=dt)
        else:
            self.position_encoding = LearnedPositionEncoding(
                d // 2, max_size=c.max_learned_positions, dtype=dt, rngs=rngs
            )
        self.query_embed = nnx.Param(
            jax.random.normal(rngs.params(), (c.num_query_groups * c.num_queries, d))
        )
        layer_args = dict(
            dropout=c.dropout,
            attention_dropout=c.attention_dropout,
            normalize_before=c.normalize_before,
            dtype=dt,
            rngs=rngs,
        )
        self.encoder_layers = nnx.List(
            [
                EncoderLayer(d, c.num_heads, c.ffn_dim, **layer_args)
                for _ in range(c.num_encoder_layers)
            ]
        )
        self.encoder_norm = (
            nnx.LayerNorm(d, epsilon=1e-5, dtype=dt, rngs=rngs)
            if c.normalize_before
            else nnx.data(None)
        )
        self.decoder_layers = nnx.List(
            [
                DecoderLayer(d, c.num_heads, c.ffn_dim, **layer_args)
                for _ in range(c.num_decoder_layers)
            ]
        )
        self.decoder_norm = nnx.LayerNorm(d, epsilon=1e-5, dtype=dt, rngs=rngs)
        self.class_head = nnx.Linear(d, c.num_classes + 1, dtype=dt, rngs=rngs)
        self.box_head = BoxHead(d, dt, rngs)
        self.deterministic = True  # the mode, set with every submodule's by train() / eval()
        self.eval()

    def check_inputs(self, images: jax.Array, pixel_mask: jax.Array) -> None:
        """Raises ValueError/TypeError for inputs the model cannot take (at trace time)."""
        c = self.config.in_channels
        if not hasattr(images, "shape") or not hasattr(pixel_mask, "shape"):
            raise TypeError("images and pixel_mask must be arrays")
        if images.ndim != 4 or images.shape[-1] != c:
            raise ValueError(
                f"images must be [B, H, W, {c}] (channels last), got shape {images.shape}"
            )
        if not jnp.issubdtype(images.dtype, jnp.floating):
            raise TypeError(f"images must be floating point, got {images.dtype}")
        if pixel_mask.ndim != 3:
            raise ValueError(f"pixel_mask must be [B, H, W], got shape {pixel_mask.shape}")
        if pixel_mask.shape[0] != images.shape[0]:
            raise ValueError(
                f"batch sizes differ: images {images.shape[0]}, pixel_mask {pixel_mask.shape[0]}"
            )
        if pixel_mask.shape != images.shape[:3]:
            raise ValueError(
                f"pixel_mask shape {pixel_mask.shape} must equal images' [B, H, W] "
                f"{images.shape[:3]}"
            )
        stride = self.config.backbone.stride
        if images.shape[1] < stride or images.shape[2] < stride:
            raise ValueError(
                f"images {images.shape[1]}x{images.shape[2]} are smaller than the backbone "
                f"stride {stride}"
            )

    def __call__(
        self, images: jax.Array, pixel_mask: jax.Array, *, train: bool | None = None
    ) -> dict[str, object]:
        """``images``: ``[B, H, W, 3]`` float, ``pixel_mask``: ``[B, H, W]`` -> outputs.

        ``train`` is deprecated: set the mode with ``model.train()`` / ``model.eval()``.
        Given, it applies to this call only (with a ``DeprecationWarning``).
        """
        if train is None:
            return self._forward(images, pixel_mask)
        warnings.warn(
            "DETR(..., train=...) is deprecated; use model.train() / model.eval()",
            DeprecationWarning,
            stacklevel=2,
        )
        was_training = not self.deterministic
        self.train() if train else self.eval()
        try:
            return self._forward(images, pixel_mask)
        finally:
            self.train() if was_training else self.eval()

    def _forward(self, images: jax.Array, pixel_mask: jax.Array) -> dict[str, object]:
        self.check_inputs(images, pixel_mask)
        c = self.config
        dt = c.dtype or jnp.float32
        # Padding is 0 after normalisation, as official DETR and HF pad: whatever the
        # padded pixels hold (a uint8 0 normalised to about -2.1, say), the output is that
        # of the zero-padded image.
        real = pixel_mask != 0
        features = self.backbone(jnp.where(real[..., None], images, 0).astype(dt))
        b, h, w, _ = features.shape
        mask = downsample_pixel_mask(real, (h, w))
        pos = self.position_encoding(mask).reshape(b, h * w, c.d_model)
        src = self.input_proj(features).reshape(b, h * w, c.d_model)
        mask = mask.reshape(b, h * w)
        for layer in self.encoder_layers:
            src = layer(src, pos, mask)
        if self.encoder_norm is not None:
            src = self.encoder_norm(src)
        groups = 1 if self.deterministic else c.num_query_groups
        queries = self.query_embed[...][: groups * c.num_queries].astype(dt)
        query_pos = jnp.broadcast_to(queries[None], (b, *queries.shape))
        tgt = jnp.zeros_like(query_pos)
        hidden = []
        for i, layer in enumerate(self.decoder_layers):
            tgt = layer(tgt, src, pos, query_pos, mask, query_groups=groups)
            if c.aux_loss or i == len(self.decoder_layers) - 1:
                hidden.append(self.decoder_norm(tgt))
        hs = jnp.stack(hidden)
        logits = self.class_head(hs).astype(jnp.float32)
        boxes = self.box_head(hs)
        out: dict[str, object] = {"logits": logits[-1], "boxes": boxes[-1]}
        if c.aux_loss:
            out["aux"] = tuple(
                {"logits": logits[i], "boxes": boxes[i]} for i in range(len(hidden) - 1)
            )
        return out
