"""The R50 / R101 presets, built abstractly: parameter count, frozen parts, DC5."""

import jax
import pytest
from flax import nnx

from jaxvision import models, nn


@pytest.fixture(scope="module")
def r50():
    return nnx.eval_shape(lambda: models.detr_r50(91, rngs=nnx.Rngs(0)))


def _count(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.torch
def test_parameter_count_of_detr_r50_matches_hf(r50):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(out_features=["stage4"]),
        num_labels=91,
    )
    with torch.device("meta"):
        hf = transformers.DetrForObjectDetection(config)
    assert _count(r50) == hf.num_parameters()


def test_parameter_count_of_detr_r50_by_hand(r50):
    # ResNet-50 convolutions (no BN affine: frozen), projection, transformer, heads.
    convs = 9408  # stem 7x7x3x64
    cin = 64
    for depth, width in zip((3, 4, 6, 3), (256, 512, 1024, 2048), strict=True):
        mid = width // 4
        for b in range(depth):
            i = cin if b == 0 else width
            convs += i * mid + 9 * mid * mid + mid * width + (i * width if b == 0 else 0)
        cin = width
    d, f = 256, 2048
    attention = 4 * (d * d + d)
    ffn = d * f + f + f * d + d
    encoder = 6 * (attention + ffn + 2 * 2 * d)
    decoder = 6 * (2 * attention + ffn + 3 * 2 * d) + 2 * d
    heads = (d * 92 + 92) + 2 * (d * d + d) + (d * 4 + 4)
    total = convs + (2048 * d + d) + 100 * d + encoder + decoder + heads
    assert _count(r50) == total


def test_frozen_statistics_are_not_parameters_and_labels_freeze_stem_and_layer1(r50):
    assert len(jax.tree.leaves(nnx.state(r50, nn.FrozenStat))) == 4 * 53
    params = nnx.state(r50, nnx.Param)
    assert "stem_norm" not in params["backbone"]
    labels = models.detr_param_labels(params, r50.config)
    assert jax.tree.leaves(labels["backbone"]["stem_conv"]) == ["frozen"]
    stages = labels["backbone"]["stages"]
    assert set(jax.tree.leaves(stages[0])) == {"frozen"}
    assert set(jax.tree.leaves(stages[1])) == {"backbone"}
    assert jax.tree.leaves(labels["class_head"]) == ["transformer", "transformer"]
    mask = models.detr_trainable_mask(params, r50.config)
    assert jax.tree.leaves(mask["backbone"]["stem_conv"]) == [False]
    assert jax.tree.leaves(mask["query_embed"]) == [True]


def test_dc5_and_r101_presets():
    assert models.detr_r50_config(dc5=True).backbone.stride == 16
    assert models.detr_r50_config().backbone.stride == 32
    assert models.detr_r101_config(20).backbone.depths == (3, 4, 23, 3)
    assert models.detr_tiny_config(3).backbone.stride == 16
    out = nnx.eval_shape(
        lambda: models.detr_r50(5, rngs=nnx.Rngs(0), dc5=True, aux_loss=False)(
            jax.numpy.zeros((1, 64, 96, 3)), jax.numpy.ones((1, 64, 96), bool)
        )
    )
    assert out["logits"].shape == (1, 100, 6) and "aux" not in out
    with pytest.raises(ValueError, match="position_encoding"):
        models.detr_tiny_config(3, position_encoding="cosine")
    with pytest.raises(ValueError, match="num_heads"):
        models.detr_tiny_config(3, num_heads=5)


def test_pre_norm_and_learned_encoding_options_build_and_run_abstractly():
    def build_and_call():
        model = models.detr_tiny(
            4, rngs=nnx.Rngs(0), normalize_before=True, position_encoding="learned"
        )
        out = model(jax.numpy.zeros((2, 64, 48, 3)), jax.numpy.ones((2, 64, 48), bool))
        return model, out

    model, out = nnx.eval_shape(build_and_call)
    assert model.encoder_norm is not None
    assert out["logits"].shape == (2, 16, 5) and out["boxes"].shape == (2, 16, 4)
