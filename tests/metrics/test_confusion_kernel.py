"""The CUDA confusion-matrix kernel (one-hot matrix products), run in the Pallas interpreter.

The kernel is what ``confusion_matrix`` runs on CUDA GPUs; here its counts are checked on
the CPU against the scatter path every other device runs and against ``np.bincount``, and
its lowering to Triton is checked without a GPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision import metrics
from jaxvision._src.metrics import confusion, confusion_kernel
from jaxvision._src.varying import varying_axes

KERNEL_NAME = "jaxvision_confusion_matrix"


def bincount_reference(target, pred, num_classes, ignore_index=None):
    """``[..., N]`` labels -> ``[..., C, C + 1]`` int64 counts, the documented convention."""
    c = num_classes
    t = np.asarray(target).astype(np.int64)
    p = np.asarray(pred).astype(np.int64)
    lead = t.shape[:-1]
    t, p = t.reshape(-1, t.shape[-1]), p.reshape(-1, p.shape[-1])
    out = []
    for ti, pi in zip(t, p, strict=True):
        keep = (ti >= 0) & (ti < c)
        if ignore_index is not None:
            keep &= ti != ignore_index
        col = np.where((pi >= 0) & (pi < c), pi, c)
        bins = ti[keep] * (c + 1) + col[keep]
        out.append(np.bincount(bins, minlength=c * (c + 1)).reshape(c, c + 1))
    return np.stack(out).reshape(*lead, c, c + 1)


@functools.partial(jax.jit, static_argnums=(2, 3), static_argnames=("chunk", "dot_dtype"))
def run_kernel(target, pred, num_classes, ignore_index, *, chunk=64, dot_dtype=jnp.int8):
    """``[B, N]`` labels -> ``[B, C, C + 1]``, in the interpreter, with a small chunk so
    that programs loop over several chunks and the last program is partly empty."""
    return confusion_kernel.confusion_matrix_kernel(
        target,
        pred,
        num_classes,
        ignore_index,
        chunk=chunk,
        programs=4,
        dot_dtype=dot_dtype,
        interpret=True,
    )


def random_labels(rng, shape, num_classes, dtype):
    """Labels mostly in ``[0, C)``, with out-of-range values (and 255) mixed in."""
    if np.dtype(dtype) == np.uint8:
        low, high = 0, 256
    else:
        low, high = -5, num_classes + 5
    labels = rng.integers(0, num_classes, size=shape)
    wild = rng.integers(low, high, size=shape)
    odd = rng.random(shape) < 0.15
    labels = np.where(odd, wild, labels)
    labels[rng.random(shape) < 0.05] = 255
    return labels.astype(dtype)


def check(target, pred, num_classes, ignore_index, **kwargs):
    got = np.asarray(run_kernel(target, pred, num_classes, ignore_index, **kwargs))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, bincount_reference(target, pred, num_classes, ignore_index))
    scatter = metrics.confusion_matrix(
        target, pred, num_classes, ignore_index=ignore_index, per_image=True
    )
    np.testing.assert_array_equal(got, scatter)


@pytest.mark.parametrize(
    ("num_classes", "dtype", "ignore_index", "n"),
    [
        (1, np.uint8, None, 300),
        (2, np.int32, 255, 513),
        (19, np.uint8, 255, 1000),
        (19, np.int32, None, 1000),
        (19, np.uint8, 3, 777),  # ignore_index naming a class: its predictions still count
        (21, np.int32, -1, 1500),
        (40, np.uint8, None, 2049),
        (127, np.int32, 255, 999),  # the largest C the kernel takes (Cp = 128)
    ],
)
def test_counts_equal_scatter_path_and_bincount(num_classes, dtype, ignore_index, n):
    rng = np.random.default_rng(num_classes * 1000 + n)
    target = random_labels(rng, (2, n), num_classes, dtype)
    pred = random_labels(rng, (2, n), num_classes, dtype)
    check(target, pred, num_classes, ignore_index)


def test_mixed_dtypes_and_the_default_chunk():
    rng = np.random.default_rng(1)
    target = random_labels(rng, (1, 3 * confusion_kernel.CHUNK + 17), 19, np.uint8)
    pred = random_labels(rng, target.shape, 19, np.int32)
    check(target, pred, 19, 255, chunk=confusion_kernel.CHUNK)


def test_float16_one_hots_count_exactly():
    rng = np.random.default_rng(2)
    target = random_labels(rng, (2, 700), 19, np.int32)
    pred = random_labels(rng, (2, 700), 19, np.int32)
    check(target, pred, 19, 255, dot_dtype=jnp.float16)


def test_64_bit_labels_wrap_as_the_scatter_path_does():
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        target = random_labels(rng, (2, 200), 5, np.int64)
        pred = random_labels(rng, (2, 200), 5, np.int64)
        target[0, :10] = 2**32 + 1  # int32 view: class 1
        pred[1, :10] = 2**33 + 2  # int32 view: class 2
        got = np.asarray(run_kernel(target, pred, 5, 255))
        want = metrics.confusion_matrix(target, pred, 5, ignore_index=255, per_image=True)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.int32


@pytest.mark.parametrize("shape", [(1, 0), (0, 10), (3, 0)])
def test_empty_input(shape):
    t = np.zeros(shape, np.uint8)
    got = confusion_kernel.confusion_matrix_kernel(t, t, 4, None, interpret=True)
    np.testing.assert_array_equal(got, np.zeros((shape[0], 4, 5), np.int32))


def test_per_image_through_the_api_shapes():
    # confusion_matrix(per_image=True) runs the kernel on [N, H * W]; the matrices per image
    # equal the bincount ones and sum to the pooled matrix.
    rng = np.random.default_rng(4)
    target = random_labels(rng, (3, 7, 50), 6, np.uint8)
    pred = random_labels(rng, (3, 7, 50), 6, np.uint8)
    flat_t, flat_p = target.reshape(3, -1), pred.reshape(3, -1)
    got = np.asarray(run_kernel(flat_t, flat_p, 6, 255))
    np.testing.assert_array_equal(got, bincount_reference(flat_t, flat_p, 6, 255))
    pooled = metrics.confusion_matrix(target, pred, 6, ignore_index=255)
    np.testing.assert_array_equal(got.sum(0), pooled)


def test_supported_class_counts():
    assert confusion_kernel.padded_classes(1) == 16
    assert confusion_kernel.padded_classes(19) == 32
    assert confusion_kernel.padded_classes(127) == 128
    assert confusion_kernel.supports(127)
    assert not confusion_kernel.supports(128)
    with pytest.raises(ValueError, match="at most"):
        confusion_kernel.confusion_matrix_kernel(jnp.zeros((1, 4)), jnp.zeros((1, 4)), 200, None)


def lower_for_cuda(fn, *args):
    return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()


def test_lowers_to_triton_for_cuda(monkeypatch):
    monkeypatch.setattr(confusion, "GPU_KERNEL", True)  # off by default (slower on H100)
    # Lowering (jaxpr -> Triton IR) needs no GPU; compiling the IR to PTX happens on one.
    t = jnp.zeros((2, 64, 96), jnp.uint8)
    text = (
        jax.jit(metrics.confusion_matrix, static_argnums=2, static_argnames="ignore_index")
        .trace(t, t, 19, ignore_index=255)
        .lower(lowering_platforms=("cuda",))
        .as_text()
    )
    assert KERNEL_NAME in text
    per_image = lower_for_cuda(
        lambda a, b: metrics.confusion_matrix(a, b, 19, per_image=True), t, t
    )
    assert KERNEL_NAME in per_image
    # float16 one-hots lower too; so do int32 labels under x64 (64-bit labels included).
    f16 = lower_for_cuda(
        lambda a, b: confusion_kernel.confusion_matrix_kernel(a, b, 19, 255, dot_dtype=jnp.float16),
        t.reshape(1, -1),
        t.reshape(1, -1),
    )
    assert KERNEL_NAME in f16
    with jax.enable_x64(True):
        wide = jnp.zeros((1000,), jnp.int64)
        assert KERNEL_NAME in lower_for_cuda(
            lambda a, b: metrics.confusion_matrix(a, b, 21, ignore_index=0), wide, wide
        )


def test_lowers_for_cuda_inside_shard_map(monkeypatch):
    monkeypatch.setattr(confusion, "GPU_KERNEL", True)  # off by default (slower on H100)
    mesh = jax.make_mesh((len(jax.devices()),), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    t = jax.ShapeDtypeStruct((len(jax.devices()) * 2, 16, 16), jnp.uint8, sharding=sharding)

    def step(a, b):
        return jax.lax.psum(metrics.confusion_matrix(a, b, 19, ignore_index=255), "data")

    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=P())
    assert KERNEL_NAME in lower_for_cuda(sharded, t, t)


def test_inside_shard_map_output_varies_over_both_inputs_axes(monkeypatch):
    monkeypatch.setattr(confusion, "GPU_KERNEL", True)  # off by default (slower on H100)
    # Target replicated, prediction sharded: the counts vary over the mesh axis, so their
    # type must say so (else out_specs=P() would accept them unreduced) and the psum adds
    # the 8 different partial matrices.
    n_dev = len(jax.devices())
    mesh = jax.make_mesh((n_dev,), ("data",))
    rng = np.random.default_rng(5)
    target = random_labels(rng, (1, 40), 5, np.int32)
    pred = random_labels(rng, (1, 40 * n_dev), 5, np.int32)
    varying = []

    def step(a, b):
        counts = run_kernel(a, b, 5, 255)
        varying.append(varying_axes(counts))
        return jax.lax.psum(counts, "data")

    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(None, "data")), out_specs=P())
    got = jax.jit(sharded)(target, jax.device_put(pred, NamedSharding(mesh, P(None, "data"))))
    assert varying == [frozenset({"data"})]
    shards = pred.reshape(n_dev, 40)
    want = sum(bincount_reference(target, shards[i : i + 1], 5, 255) for i in range(n_dev))
    np.testing.assert_array_equal(got, want)


def test_many_classes_and_the_module_flag_use_the_scatter_path(monkeypatch):
    t = jnp.zeros((4, 32), jnp.int32)
    assert KERNEL_NAME not in lower_for_cuda(lambda a, b: metrics.confusion_matrix(a, b, 200), t, t)
    monkeypatch.setattr(confusion, "GPU_KERNEL", False)
    assert KERNEL_NAME not in lower_for_cuda(lambda a, b: metrics.confusion_matrix(a, b, 19), t, t)
