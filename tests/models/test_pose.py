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
def test_heads_shapes_finite_loss_grads_decode_and_a_few_steps_lower_the_loss(head):
    cfg = _tiny(head)
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    images, kp, w = _batch(np.random.default_rng(0), b=4)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt = optax.adam(3e-3)

    @jax.jit  # one compilation: loss, gradients, an Adam step and the decode
    def step(params, opt_state):
        def loss(params):
            m = nnx.merge(graphdef, params, rest, copy=True)
            out = m(images)
            return pose_loss(out, kp, w, cfg, flow_log_prob=m.flow if head == "rle" else None)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        m = nnx.merge(graphdef, params, rest, copy=True)
        m.eval()
        return (
            value,
            grads,
            pose_decode(m(images), cfg),
            optax.apply_updates(params, updates),
            opt_state,
        )

    value, grads, (xy, score), new_params, opt_state = step(params, opt.init(params))
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert xy.shape == (4, 17, 2) and score.shape == (4, 17)
    assert np.isfinite(np.asarray(xy)).all() and np.isfinite(np.asarray(score)).all()
    assert cfg.map_size == ((4, 4) if head == "rle" else (8, 8))
    losses = [float(value)]
    for _ in range(7):
        value, _, _, new_params, opt_state = step(new_params, opt_state)
        losses.append(float(value))
    assert losses[-1] < losses[0], losses


def test_batch_norm_follows_train_and_eval():
    cfg = _tiny("heatmap")
    model = PoseModel(cfg, rngs=nnx.Rngs(0))
    images = np.random.default_rng(1).uniform(size=(4, *SIZE, 3)).astype(np.float32)
    forward = nnx.jit(lambda m, x: m(x)["heatmaps"])  # one compilation per mode and shape
    before = np.asarray(model.backbone.stem_norm.mean[...])
    model.train()
    forward(model, images)
    after = np.asarray(model.backbone.stem_norm.mean[...])
    assert not np.allclose(before, after)  # running statistics updated in train mode
    model.eval()
    a = forward(model, images)
    np.testing.assert_allclose(model.backbone.stem_norm.mean[...], after)
    np.testing.assert_allclose(forward(model, images[:1]), a[:1], rtol=1e-4, atol=1e-6)


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


def test_integral_distribution_regulariser_is_the_kl_to_the_normalised_gaussian():
    cfg = _tiny("integral")  # 8 x 8 map, stride 4
    kp = np.array([[[10.0, 14.0], [20.0, 6.0]]], np.float32)  # input px; K = 2
    w = np.array([[1.0, 0.0]], np.float32)
    kp17 = np.zeros((1, 17, 2), np.float32)
    kp17[:, :2] = kp
    w17 = np.zeros((1, 17), np.float32)
    w17[:, :2] = w
    # float64 NumPy: the unbiased Gaussian (sigma 1 map px) at the map coordinate, normalised.
    c = (np.arange(8) + 0.5)[None, :]
    m = kp[0, 0] / 4
    g = np.exp(-((c.T - m[1]) ** 2 + (c - m[0]) ** 2) / 2.0)
    t = g / g.sum()
    uniform = np.zeros((1, 8, 8, 17), np.float32)
    peaked = uniform.copy()
    peaked[0, :, :, 0] = np.log(t)
    for logits, want in ((uniform, np.sum(t * np.log(t * 64))), (peaked, 0.0)):
        out = {"heatmaps": logits, "keypoints": kp17}  # the L1 term is 0
        got = pose_loss(out, kp17, w17, cfg, heatmap_sigma=1.0, integral_heatmap_weight=2.0)
        np.testing.assert_allclose(float(got), 2.0 * want, rtol=1e-5, atol=1e-5)


def test_integral_scores_are_the_softmax_peak_and_nan_for_a_nan_map():
    # The score is read at the argmax: jnp.max over 64 x 48 x 17 maps skips NaN on XLA's CPU.
    cfg = pose_small_config("integral", (256, 192), backbone=TINY, deconv_layers=1)
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 64, 48, 17)).astype(np.float32)
    h[1, 40, 3, 5] = np.nan
    outputs = {"heatmaps": jnp.asarray(h), "keypoints": jnp.zeros((2, 17, 2))}
    _, score = pose_decode(outputs, cfg)
    score = np.asarray(score)
    flat = h.reshape(2, -1, 17).astype(np.float64)
    p = np.exp(flat - flat.max(1, keepdims=True))
    want = (p / p.sum(1, keepdims=True)).max(1)  # NumPy: NaN where the map holds NaN
    assert np.isnan(score[1, 5]) and np.isnan(want[1, 5])
    np.testing.assert_allclose(score, want, rtol=1e-5)  # NaN where NaN
