"""The CPU lowering of the ResNet's convolution + frozen BatchNorm (BN folded into the
kernel, 1x1 convolutions as dots) against the convolution followed by the norm."""

import jax
import numpy as np
from flax import nnx

from jaxvision._src.models import conv_norm, resnet
from jaxvision._src.nn.frozen_batch_norm import FrozenBatchNorm


def test_folded_lowerings_match_conv_then_norm(monkeypatch):
    # Three stages: a strided 1x1 shortcut (stage 2) and a dilated last stage (stage 3).
    config = resnet.ResNetConfig(depths=(1, 1, 1), widths=(8, 16, 32), dilate_last=True)
    model = resnet.ResNet(config, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    for _, bn in nnx.iter_graph(model):
        if isinstance(bn, FrozenBatchNorm):
            c = bn.scale.shape[0]
            bn.scale[...] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            bn.bias[...] = rng.normal(size=c).astype(np.float32)
            bn.mean[...] = rng.normal(size=c).astype(np.float32)
            bn.var[...] = rng.uniform(0.5, 2.0, c).astype(np.float32)
    x = rng.normal(size=(1, 32, 32, 3)).astype(np.float32)

    def run(lowering):
        monkeypatch.setattr(conv_norm, "CPU_LOWERING", lowering)
        loss = nnx.jit(nnx.value_and_grad(lambda m: (m(x) ** 2).mean()))
        out, grads = loss(model)
        return np.asarray(out), [np.asarray(g) for g in jax.tree.leaves(nnx.state(grads))]

    want, want_grads = run("plain")
    got, got_grads = run("fold")
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.abs(w).max())
