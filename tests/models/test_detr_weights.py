"""Weight import: a random-weight HF DetrForObjectDetection converted to jaxvision agrees."""

import functools
import re

import jax
import numpy as np
import pytest
from flax import nnx

from jaxvision import models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.torch

NUM_LABELS = 7


def _hf_model(position_embedding_type: str):
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(
            out_features=["stage4"],
            embedding_size=16,
            hidden_sizes=[32, 64, 64, 128],
            depths=[2, 1, 1, 1],
        ),
        num_labels=NUM_LABELS,
        d_model=64,
        encoder_layers=2,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=96,
        decoder_ffn_dim=96,
        num_queries=12,
        position_embedding_type=position_embedding_type,
    )
    torch.manual_seed(0)
    model = transformers.DetrForObjectDetection(config).eval()
    # Random frozen-BN statistics and affine terms, which the HF init leaves at 1 / 0,
    # and random biases, so that every converted array matters.
    gen = torch.Generator().manual_seed(1)
    state = model.state_dict()
    for name, value in state.items():
        if not value.is_floating_point():
            continue
        if name.endswith("running_var"):
            state[name] = torch.rand(value.shape, generator=gen) + 0.5
        elif name.endswith(("normalization.weight",)):
            state[name] = torch.rand(value.shape, generator=gen) + 0.5
        elif name.endswith(("running_mean", "bias")):
            state[name] = 0.1 * torch.randn(value.shape, generator=gen)
    model.load_state_dict(state)
    return model


def _inputs(padded: bool):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 128, 160, 3)).astype(np.float32)
    mask = np.ones((2, 128, 160), bool)
    if padded:
        mask[0, 100:, :] = False
        mask[0, :, 120:] = False
        mask[1, :, 70:] = False
        images[~mask] = 0.0
    return images, mask


def _hf_outputs(model, images, mask):
    with torch.no_grad():
        out = model(
            pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
            pixel_mask=torch.from_numpy(mask.astype(np.int64)),
        )
    return out.logits.numpy(), out.pred_boxes.numpy()


def _numpy_state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _to_official_names(state: dict, config) -> dict:
    """Renames an HF (HF-ResNet backbone) state dict to facebookresearch/detr key names."""
    out = {}
    for name, value in state.items():
        n = name
        n = n.replace("model.backbone.model.embedder.embedder.convolution", "backbone.0.body.conv1")
        n = n.replace("model.backbone.model.embedder.embedder.normalization", "backbone.0.body.bn1")
        m = re.match(r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.(.*)", n)
        if m:
            s, b, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = re.sub(r"layer\.(\d)\.convolution", lambda g: f"conv{int(g[1]) + 1}", rest)
            rest = re.sub(r"layer\.(\d)\.normalization", lambda g: f"bn{int(g[1]) + 1}", rest)
            rest = rest.replace("shortcut.convolution", "downsample.0")
            rest = rest.replace("shortcut.normalization", "downsample.1")
            n = f"backbone.0.body.layer{s + 1}.{b}.{rest}"
        n = n.replace("model.input_projection", "input_proj")
        n = n.replace("model.query_position_embeddings", "query_embed")
        n = n.replace("model.position_embedding.row_embeddings", "backbone.1.row_embed")
        n = n.replace("model.position_embedding.column_embeddings", "backbone.1.col_embed")
        n = n.replace("model.encoder.", "transformer.encoder.")
        n = n.replace("model.decoder.layernorm", "transformer.decoder.norm")
        n = n.replace("model.decoder.", "transformer.decoder.")
        n = n.replace("encoder_attn_layer_norm", "norm2")
        n = n.replace("encoder_attn.", "multihead_attn.")
        n = n.replace("class_labels_classifier", "class_embed")
        n = n.replace("bbox_predictor", "bbox_embed")
        n = (
            n.replace("o_proj", "out_proj")
            .replace("mlp.fc1", "linear1")
            .replace("mlp.fc2", "linear2")
        )
        n = n.replace("self_attn_layer_norm", "norm1")
        if "transformer.encoder" in n:
            n = n.replace("final_layer_norm", "norm2")
        n = n.replace("final_layer_norm", "norm3")
        out[n] = value
    for key in [k for k in out if k.endswith("q_proj.weight") or k.endswith("q_proj.bias")]:
        p, kind = key.rsplit(".q_proj.", 1)
        parts = [out.pop(f"{p}.{x}_proj.{kind}") for x in "qkv"]
        out[f"{p}.in_proj_{kind}"] = np.concatenate(parts, axis=0)
    return out


@pytest.fixture(scope="module", params=["sine", "learned"])
def hf_model(request):
    return _hf_model(request.param)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, images, mask):
    return nnx.merge(graphdef, state)(images, mask)


def _jax_outputs(model, images, mask):
    # One jitted function for all models of a structure: the compiled forward is reused.
    out = _forward(*nnx.split(model), images, mask)
    return np.asarray(out["logits"]), np.asarray(out["boxes"])


def test_hf_parity_with_and_without_padding(hf_model):
    model = models.load_hf_detr(_numpy_state(hf_model), hf_model.config.to_dict())
    for padded in (False, True):
        images, mask = _inputs(padded)
        logits, boxes = _hf_outputs(hf_model, images, mask)
        ours_logits, ours_boxes = _jax_outputs(model, images, mask)
        assert ours_logits.shape == (2, 12, NUM_LABELS + 1)
        np.testing.assert_allclose(ours_logits, logits, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(ours_boxes, boxes, rtol=1e-5, atol=1e-4)


def test_official_key_names_give_the_same_model(hf_model):
    official = _to_official_names(_numpy_state(hf_model), hf_model.config)
    config = models.detr_config_from_hf(hf_model.config.to_dict())
    model = models.load_official_detr(official, config)
    images, mask = _inputs(padded=True)
    logits, boxes = _hf_outputs(hf_model, images, mask)
    ours_logits, ours_boxes = _jax_outputs(model, images, mask)
    np.testing.assert_allclose(ours_logits, logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours_boxes, boxes, rtol=1e-5, atol=1e-4)


def test_bad_state_dicts_are_refused():
    hf = _hf_model("sine")
    state, config = _numpy_state(hf), hf.config.to_dict()
    with pytest.raises(TypeError, match="state_dict"):
        models.load_hf_detr(list(state.items()), config)
    missing = dict(state)
    missing.pop("class_labels_classifier.weight")
    with pytest.raises(KeyError, match="class_labels_classifier.weight"):
        models.load_hf_detr(missing, config)
    with pytest.raises(ValueError, match="unexpected keys"):
        models.load_hf_detr({**state, "extra.weight": np.zeros(3)}, config)
    wrong = dict(config, num_queries=5)
    with pytest.raises(ValueError, match="does not match"):
        models.load_hf_detr(state, wrong)
