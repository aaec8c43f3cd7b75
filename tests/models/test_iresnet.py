"""IResNet: insightface's parameter count, output shapes, train / eval state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxvision._src.models import iresnet


def _count(cfg: iresnet.IResNetConfig) -> int:
    """Trainable parameters of insightface's iresnet, from its layer list."""
    total = 27 * cfg.stem_width + 2 * cfg.stem_width + cfg.stem_width  # conv, BN, PReLU
    cin = cfg.stem_width
    for depth, width in zip(cfg.depths, cfg.widths, strict=True):
        for i in range(depth):
            total += 2 * cin + 9 * cin * width + 2 * width + width + 9 * width * width + 2 * width
            if i == 0:
                total += cin * width + 2 * width  # 1x1 shortcut + BN
            cin = width
    side = cfg.input_size // 2 ** len(cfg.depths)
    total += 2 * cin + cin * side * side * cfg.embedding_dim + cfg.embedding_dim  # BN, FC
    return total + cfg.embedding_dim  # the last BN's bias (its scale is frozen at 1)


def _params(model) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_iresnet50_matches_insightface_parameter_count():
    p = iresnet.iresnet50()
    model = jax.eval_shape(lambda: p.build(rngs=nnx.Rngs(0)))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == _count(p.config)
    # insightface reports 43.6M (r50) and 65.2M (r100) parameters.
    assert abs(n / 1e6 - 43.6) < 0.05
    assert iresnet.iresnet100().config.depths == (3, 13, 30, 3)


def test_cpu_model_train_eval_state():
    cfg = iresnet.IResNetConfig(depths=(1, 1), widths=(8, 16), stem_width=8, embedding_dim=12,
                                input_size=8, dropout=0.5)
    model = iresnet.IResNet(cfg, rngs=nnx.Rngs(0))
    assert _count(cfg) == _params(model)  # the layer list on a second (tiny) config
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    model.train()
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    y = nnx.jit(lambda m, v: m(v))(model, x)
    after = nnx.state(model, nnx.BatchStat)
    assert y.shape == (4, 12)
    assert not np.allclose(before["bn"]["var"], np.asarray(after["bn"]["var"]))
    model.eval()
    frozen = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    forward = nnx.jit(lambda m, v: m(v))
    y1, y2 = forward(model, x), forward(model, x)
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2))
    np.testing.assert_array_equal(frozen["bn"]["var"], np.asarray(model.bn.var[...]))
    assert np.isfinite(np.asarray(y1)).all()
    with pytest.raises(ValueError, match=r"`images` must be \[B, 8, 8, 3\]"):
        model(jnp.zeros((2, 40, 40, 3)))
    with pytest.raises(ValueError, match="`input_size`"):
        iresnet.IResNet(iresnet.IResNetConfig(input_size=100), rngs=nnx.Rngs(0))
