"""Per-convolution-shape time of DETR-R50's backbone on the CPU: XLA (jaxvision's lowering)
against PyTorch (oneDNN), side by side in one run.

    python experiments/bench/conv_shapes.py [--batch 2] [--size 256] [--repeats 7]

Every distinct convolution of the ResNet-50 backbone at the DETR CPU benchmark's shape
(``experiments/bench/detr_step.py --preset cpu``: 2 x 256 x 256) is timed alone, as the
training step runs it: the stem and the first stage are frozen in DETR, so forward only;
every later convolution forward + the gradients of its input and kernel (the first block of
stage 2 needs no input gradient, a detail ignored here). jaxvision's side is what the
library lowers on the CPU (``models/conv_norm.py`` ``fold``: 1x1 convolutions as a
``dot_general`` over channels, strided ones on a strided slice; k x k ones as an NHWC
convolution), each a jitted ``vjp``; PyTorch's is ``F.conv2d`` on NCHW tensors with
``backward``. The calls alternate, medians over ``--repeats`` rounds. The table weighs each
shape by its count in the network: where the step's time goes, shape by shape, and which
shapes lose to PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np


def resnet50_convs(size: int) -> Counter:
    """``(cin, cout, k, stride, h_in, trained)`` -> count, for torchvision's ResNet-50 v1.5."""
    convs: Counter = Counter()
    convs[(3, 64, 7, 2, size, False)] += 1
    h = size // 4  # after the stem's stride 2 and the max pool
    cin = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        trained = stage > 0
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            convs[(cin, width, 1, 1, h, trained)] += 1
            convs[(width, width, 3, stride, h, trained)] += 1
            h_out = h // stride
            convs[(width, 4 * width, 1, 1, h_out, trained)] += 1
            if block == 0:
                convs[(cin, 4 * width, 1, stride, h, trained)] += 1
            cin, h = 4 * width, h_out
    return convs


def jax_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """NHWC x HWIO, as the library lowers it on the CPU (1x1 as a dot over channels)."""
    k = w.shape[0]
    if k == 1:
        return jnp.einsum("nhwc,cd->nhwd", x[:, ::stride, ::stride], w[0, 0])
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), [(k // 2, k // 2)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def time_pair(shape: tuple, batch: int, repeats: int) -> tuple[float, float, float]:
    """``(jaxvision ms, torch ms, GFLOP)`` for one convolution shape."""
    import torch

    cin, cout, k, stride, h, trained = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, h, h, cin), np.float32)
    w = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    h_out = h // stride
    g = rng.standard_normal((batch, h_out, h_out, cout), np.float32)
    xj, wj, gj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(g)
    if trained:
        fj = jax.jit(lambda x, w, g: jax.vjp(lambda x, w: jax_conv(x, w, stride), x, w)[1](g))
    else:
        fj = jax.jit(lambda x, w, g: jax_conv(x, w, stride))
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(trained)
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_(trained)
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())

    def ft():
        out = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=k // 2)
        if trained:
            xt.grad = wt.grad = None
            out.backward(gt)
        return out

    def run_j():
        jax.block_until_ready(fj(xj, wj, gj))

    with torch.no_grad() if not trained else torch.enable_grad():
        run_j()
        ft()
        tj, tt = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_j()
            tj.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ft()
            tt.append(time.perf_counter() - t0)
    flop = 2 * batch * h_out * h_out * cout * cin * k * k * (3 if trained else 1)
    return 1e3 * statistics.median(tj), 1e3 * statistics.median(tt), flop / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import torch

    print(f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load average at the start: {open('/proc/loadavg').read().split()[:3]}")
    rows = []
    for shape, count in resnet50_convs(args.size).items():
        tj, tt, gflop = time_pair(shape, args.batch, args.repeats)
        rows.append((shape, count, tj, tt, gflop))
    head = "cin  cout k s  h_in  pass      n  jaxvision ms  GFLOP/s  torch ms  GFLOP/s  torch/jaxv"
    print(head)
    for (cin, cout, k, s, h, trained), n, tj, tt, gflop in rows:
        kind = "fwd+bwd" if trained else "fwd"
        rate_j, rate_t = gflop / tj * 1e3, gflop / tt * 1e3
        print(
            f"{cin:4d} {cout:4d} {k} {s} {h:5d}  {kind:8s}{n:3d}  {tj:12.2f} {rate_j:8.1f}"
            f" {tt:9.2f} {rate_t:8.1f}  {tt / tj:10.2f}"
        )
    total_j = sum(n * tj for _, n, tj, _, _ in rows)
    total_t = sum(n * tt for _, n, _, tt, _ in rows)
    print(
        f"backbone convolutions, weighted by count: jaxvision {total_j:.1f} ms, torch "
        f"{total_t:.1f} ms, ratio torch / jaxvision {total_t / total_j:.2f}"
    )
    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
