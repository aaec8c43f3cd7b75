"""Ring and halving-doubling all-reduce against lax.psum on 8 simulated CPU devices.

    python experiments/bench/allreduce.py [--sizes-kb 1 16 256 4096 65536] [--repeats 7]

For each per-device array size: the bytes each device sends under the ring model
(2 (n - 1) / n of the array, the bandwidth-optimal volume; halving-doubling sends the same),
the number of communication steps, and the measured median time of
``parallel.ring_all_reduce``, ``parallel.halving_doubling_all_reduce`` and ``lax.psum`` (XLA's own),
with psum's time divided by ours (above 1: ours is faster). On one CPU the "devices" share
memory, so this measures the cost of the schedule (copies and synchronisation), not a
network.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxvision import parallel  # noqa: E402


def human(nbytes):
    return f"{nbytes / 2**20:.2f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:.2f} KB"


def timed(f, x, repeats):
    jax.block_until_ready(f(x))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-kb", type=int, nargs="+", default=[1, 16, 256, 4096, 65536])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    mesh = parallel.make_mesh(8)
    n = mesh.shape["data"]
    impls = {
        "ring": parallel.ring_all_reduce,
        "tree": parallel.halving_doubling_all_reduce,
        "psum": lambda x, axis: lax.psum(x, axis),
    }
    fns = {
        name: jax.jit(
            jax.shard_map(
                lambda x, f=f: f(x, "data"), mesh=mesh, in_specs=P("data"), out_specs=P("data")
            )
        )
        for name, f in impls.items()
    }
    print(f"jax {jax.__version__}, {n} CPU devices, float32, median of {args.repeats}")
    print(
        "| per-device size | ring bytes sent / device | steps ring / tree | ring ms | tree ms "
        "| psum ms | psum / ring | psum / tree |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kb in args.sizes_kb:
        m = kb * 1024 // 4
        x = jax.device_put(
            jnp.asarray(np.random.default_rng(0).normal(size=(n * m,)), jnp.float32),
            NamedSharding(mesh, P("data")),
        )
        ref = np.asarray(fns["psum"](x))
        for name in ("ring", "tree"):
            np.testing.assert_allclose(np.asarray(fns[name](x)), ref, rtol=1e-4, atol=1e-4)
        t = {name: timed(f, x, args.repeats) for name, f in fns.items()}
        sent = 2 * (n - 1) / n * m * 4
        steps = f"{2 * (n - 1)} / {2 * int(np.log2(n))}"
        print(
            f"| {human(m * 4)} | {human(sent)} | {steps} | {t['ring'] * 1e3:.3f} | "
            f"{t['tree'] * 1e3:.3f} | {t['psum'] * 1e3:.3f} | {t['psum'] / t['ring']:.2f} | "
            f"{t['psum'] / t['tree']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
