"""Pose model: head shapes, finite losses and gradients, train / eval BatchNorm, a few
training steps, and torchvision-named ResNet weights against a torch forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxvision._src.models.pose import PoseModel, pose_small_config
from jaxvision._src.models.pose_criterion import pose_decode, pose_loss
from jaxvision._src.models.pose_weights import load_torchvision_resnet_backbone
from jaxvision._src.models.resnet import ResNetConfig

SIZE = (32, 32)
# Two basic-block stages (stride 8) and one deconvolution: the small preset's structure at
# a size that compiles quickly.
TINY = ResNetConfig(
    depths=(1, 1), widths=(8, 16), block="basic", stem_width=8, norm="batch", frozen_stages=0
)


def _tiny(head):
    return pose_small_config(head, SIZE, backbone=TINY, deconv_layers=1, deconv_width=16)


def _batch(rng, b=2):
    images = rng.uniform(size=(b, *SIZE, 3)).astype(np.float32)
    kp = rng.uniform(2, 30, (b, 17, 2)).astype(np.float32)
    w = (rng.uniform(size=(b, 17)) > 0.2).astype(np.float32)
    return images, kp, w


@pytest.mark.parametrize("head", ["heatmap", "integral", "simcc", "rle"])
def test_heads_shapes_finite_loss_grads_and_decode(head):
    cfg = _tiny(head)
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    images, kp, w = _batch(np.random.default_rng(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def loss_and_decode(params):
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            out = m(images)
            return pose_loss(out, kp, w, cfg, flow_log_prob=m.flow if head == "rle" else None)

        value, grads = jax.value_and_grad(loss)(params)
        m = nnx.merge(graphdef, params, rest, copy=True)
        m.eval()
        return value, grads, pose_decode(m(images), cfg)

    value, grads, (xy, score) = loss_and_decode(params)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert xy.shape == (2, 17, 2) and score.shape == (2, 17)
    assert cfg.map_size == ((4, 4) if head == "rle" else (8, 8))


def test_batch_norm_follows_train_and_eval():
    cfg = _tiny("heatmap")
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    images = np.random.default_rng(1).uniform(size=(4, *SIZE, 3)).astype(np.float32)
    before = np.asarray(model.backbone.stem_norm.mean[...])
    model.train()
    model(images)
    after = np.asarray(model.backbone.stem_norm.mean[...])
    assert not np.allclose(before, after)  # running statistics updated in train mode
    model.eval()
    a = model(images)["heatmaps"]
    np.testing.assert_allclose(model.backbone.stem_norm.mean[...], after)
    np.testing.assert_allclose(model(images[:1])["heatmaps"], a[:1], rtol=1e-4, atol=1e-6)


def test_a_few_integral_steps_lower_the_loss():
    cfg = _tiny("integral")
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    images, kp, w = _batch(np.random.default_rng(2), b=4)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, rest, opt_state):
        def loss_fn(p):
            m = nnx.merge(graphdef, p, rest, copy=True)
            return pose_loss(m(images), kp, w, cfg), nnx.state(m, nnx.BatchStat)

        (loss, stats), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(8):
        params, opt_state, loss = step(params, rest, opt_state)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def _torch_resnet(torch, widths, stem):
    """A torchvision-named basic-block ResNet with one block per stage."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = stem
            for s, w in enumerate(widths):
                setattr(self, f"layer{s + 1}", nn.Sequential(Block(cin, w, 1 if s == 0 else 2)))
                cin = w
            self.fc = nn.Linear(cin, 10)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for s in range(len(widths)):
                x = getattr(self, f"layer{s + 1}")(x)
            return x

    net = Net()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
    return net.eval()


def test_torchvision_resnet_weights_give_torch_features():
    torch = pytest.importorskip("torch")
    cfg = _tiny("heatmap")
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    net = _torch_resnet(torch, cfg.backbone.widths, cfg.backbone.stem_width)
    unused = load_torchvision_resnet_backbone(model, net.state_dict())
    assert unused == ["fc.bias", "fc.weight"]
    model.eval()
    x = np.random.default_rng(3).normal(size=(2, *SIZE, 3)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(model.backbone(jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_bad_config_and_input_are_named():
    with pytest.raises(ValueError, match="head"):
        pose_small_config("dsnt", SIZE)
    with pytest.raises(ValueError, match="input_size"):
        pose_small_config("heatmap", (30, 32))
    model = PoseModel(_tiny("heatmap"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="images"):
        model(np.zeros((1, 16, 32, 3), np.float32))
