"""A convolution followed by its frozen BatchNorm, lowered for the device.

On the CPU the BatchNorm is folded into the convolution: the kernel's output channels are
scaled by ``s = scale / sqrt(var + eps)`` and ``bias - mean * s`` is added, so the
activations are read and written once instead of twice (forward and backward), and the
1x1 convolutions run as matrix products (``dot_general`` over the channels) rather than as
convolutions. Other devices, and the other norms, run the convolution and the norm as
written. Both are the same function up to float rounding.

Reference: Ioffe & Szegedy, "Batch Normalization", ICML 2015 (the frozen BN is an affine
map per channel, so it commutes into the preceding linear map).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvision._src.nn.frozen_batch_norm import FrozenBatchNorm

# Which lowering the CPU gets: "fold" (BN folded, 1x1 as dots) or "plain" (convolution then
# norm, as on other devices). Module-level so that the benchmark can compare them. (BN folded
# with every convolution kept a convolution was slower than both: BENCHMARKS.md.)
CPU_LOWERING = "fold"


def conv_norm(conv: nnx.Conv, norm: nnx.Module, x: jax.Array) -> jax.Array:
    """``norm(conv(x))`` for channels-last ``x`` ``[B, H, W, Cin]`` -> ``[B, H', W', Cout]``."""
    lowering = CPU_LOWERING if jax.default_backend() == "cpu" else "plain"
    if lowering == "plain" or not isinstance(norm, FrozenBatchNorm):
        return norm(conv(x))
    s = norm.scale[...] * jax.lax.rsqrt(norm.var[...] + norm.epsilon)
    shift = norm.bias[...] - norm.mean[...] * s
    kernel = conv.kernel[...] * s  # [kh, kw, Cin, Cout] scaled per output channel
    dtype = conv.dtype or jnp.result_type(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    kh, kw = kernel.shape[:2]
    strides, dilation = (
        tuple(a) if isinstance(a, tuple | list) else (a, a)
        for a in (conv.strides, conv.kernel_dilation)
    )
    if (kh, kw) == (1, 1):
        if strides != (1, 1):
            x = x[:, :: strides[0], :: strides[1]]
        y = jax.lax.dot_general(x, kernel[0, 0], (((3,), (0,)), ((), ())))
    else:
        y = jax.lax.conv_general_dilated(
            x,
            kernel,
            window_strides=strides,
            padding=conv.padding,
            rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
    return y + shift.astype(y.dtype)
