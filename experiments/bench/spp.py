"""Adaptive pools and spatial pyramid pooling, forward and forward + backward, against PyTorch.

    python experiments/bench/spp.py [--batch 32] [--repeats 15] [--torch-threads 1]

One run times jaxvision (jit-compiled, channels-last ``[N, H, W, C]``) and PyTorch eager
(``torch.nn.functional.adaptive_{max,avg}_pool2d`` on the usual ``[N, C, H, W]``
contiguous layout; SPP as PyTorch users write it, a ``torch.cat`` of adaptive max-pools
flattened per level) on the same data. Forward + backward is ``grad of sum(out * g)`` for
a fixed random ``g``. Medians over repeats (the four timings interleaved, each after one
untimed call), after a warm-up call (compile time excluded and printed apart);
ratio = PyTorch time / jaxvision time (above 1: jaxvision is faster).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jaxvision import ops  # noqa: E402


def interleaved_medians(fns, repeats):
    """Median seconds of each function, calling them in turn every repeat, so that a change
    of load on a shared machine hits every side alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()  # untimed: absorbs the switch from the other side (torch's idle threads spin)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def torch_spp(x, levels, mode):
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    # Flattened channels-last per level, to give the same feature order as jaxvision.
    return torch.cat([pool(x, n).permute(0, 2, 3, 1).flatten(1) for n in levels], dim=1)


def cases(batch):
    """(label, input NHWC shape, jax fn, torch fn on NCHW)."""
    out = []
    for shape, size in (
        ((batch, 13, 13, 256), 6),
        ((batch, 28, 28, 64), 7),
        ((batch, 15, 15, 128), 4),
        ((batch, 5, 5, 256), 7),
    ):
        for mode, jf, tf in (
            ("max", ops.adaptive_max_pool2d, F.adaptive_max_pool2d),
            ("avg", ops.adaptive_avg_pool2d, F.adaptive_avg_pool2d),
        ):
            label = f"adaptive_{mode}_pool2d {shape[1]}x{shape[2]}x{shape[3]} -> {size}"
            out.append(
                (label, shape, lambda x, jf=jf, s=size: jf(x, s), lambda x, tf=tf, s=size: tf(x, s))
            )
    for levels in ((1, 2, 4), (6, 3, 2, 1)):
        for shape in ((batch, 13, 13, 256), (batch, 10, 10, 256)):
            label = f"spatial_pyramid_pool max {levels} {shape[1]}x{shape[2]}x{shape[3]}"
            out.append(
                (
                    label,
                    shape,
                    lambda x, lv=levels: ops.spatial_pyramid_pool(x, lv),
                    lambda x, lv=levels: torch_spp(x, lv, "max"),
                )
            )
    return out


def bench_case(label, shape, jf, tf, repeats, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(jax.eval_shape(jf, jax.ShapeDtypeStruct(shape, jnp.float32)).shape)
    g = g.astype(np.float32)
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    fwd = jax.jit(jf)
    # value_and_grad, so that the forward is computed too (grad alone of a linear pool
    # does not need it, and XLA would drop it).
    bwd = jax.jit(jax.value_and_grad(lambda x: jnp.sum(jf(x) * gj)))
    start = time.perf_counter()
    jax.block_until_ready(fwd(xj))
    jax.block_until_ready(bwd(xj))
    compile_s = time.perf_counter() - start

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    gt = torch.from_numpy(g)
    gt = gt.permute(0, 3, 1, 2).contiguous() if g.ndim == 4 else gt
    np.testing.assert_allclose(np.asarray(fwd(xj)), _nhwc(tf(xt)), rtol=1e-5, atol=1e-6)

    def torch_bwd():
        xg = xt.detach().requires_grad_(True)
        loss = (tf(xg) * gt).sum()
        loss.backward()
        return xg.grad

    np.testing.assert_allclose(np.asarray(bwd(xj)[1]), _nhwc(torch_bwd()), rtol=1e-5, atol=1e-5)
    times = interleaved_medians(
        {
            "jax fwd": lambda: jax.block_until_ready(fwd(xj)),
            "torch fwd": lambda: tf(xt),
            "jax fwd+bwd": lambda: jax.block_until_ready(bwd(xj)),
            "torch fwd+bwd": torch_bwd,
        },
        repeats,
    )
    ms = {k: 1e3 * v for k, v in times.items()}
    print(
        f"| {label} | {ms['jax fwd']:.3f} | {ms['torch fwd']:.3f} | "
        f"{ms['torch fwd'] / ms['jax fwd']:.2f} | {ms['jax fwd+bwd']:.3f} | "
        f"{ms['torch fwd+bwd']:.3f} | {ms['torch fwd+bwd'] / ms['jax fwd+bwd']:.2f} | "
        f"{compile_s:.2f} |",
        flush=True,
    )


def _nhwc(t):
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if t.ndim == 4 else t).numpy()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--torch-threads", type=int, default=None, help="default: torch's")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(0)
    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), float32, batch {args.batch}, "
        f"median of {args.repeats}; ratio = torch / jax"
    )
    print(
        "| case | jax fwd ms | torch fwd ms | ratio | jax fwd+bwd ms | torch fwd+bwd ms "
        "| ratio | jax compile s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in cases(args.batch):
        bench_case(*case, args.repeats, rng)


if __name__ == "__main__":
    main()
