"""Exact matching speed: scipy in a Python loop, optax under jit+vmap, and jaxvision.

Run:  python experiments/bench/matching.py [--repeats 100]

Three workloads of DETR-like costs (5 * L1 - 2 * GIoU - prob between random boxes):
64 images x 100 queries x 1..19 targets padded to 20 (a DETR batch), 4 x 300 x up to 100,
and 8 x 100 x 100 dense. ``jaxvision.hungarian_match`` runs the device's own solver (on the
CPU the native C++ one, on CUDA the Pallas kernel); "XLA solver" is ``method="xla"`` (on the
CPU the XLA solver's rounds), and "XLA, no row reduction" that solver without the
row-reduction rounds it runs on dense problems (at least 64 rows), as it was before them.
Every time is the
median of ``--repeats`` calls after a warm-up (optax: a tenth as many), the device result
awaited with ``block_until_ready``; the compared functions are called in turn so that a
shared machine's load bursts hit them alike.
scipy's time includes the copy of the cost matrix to the host, as in DETR's matcher; optax
is given each image's [Q, T] matrix with padded targets set to cost 0 (a constant cost
keeps its matching of the real targets exact). Compile times are the first call's (tracing
+ compilation). Ratios are peer time / jaxvision time: above 1 means jaxvision is faster.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment as scipy_lsa

from jaxvision import matching
from jaxvision._src.boxes.formats import convert_host
from jaxvision._src.matching import augmenting_path


def detr_like_costs(rng: np.random.Generator, b: int, q: int, t: int) -> np.ndarray:
    """``5 * L1 - 2 * GIoU - prob`` between random boxes (cx, cy, w, h): ``[B, Q, T]``."""

    def boxes(n: int) -> np.ndarray:
        return np.concatenate(
            [rng.uniform(0.05, 0.95, (b, n, 2)), rng.uniform(0.02, 0.6, (b, n, 2))], -1
        )

    def xyxy(x: np.ndarray) -> np.ndarray:
        return convert_host(x, "cxcywh", "xyxy")

    pred, tgt = boxes(q), boxes(t)
    l1 = np.abs(pred[:, :, None] - tgt[:, None]).sum(-1)
    p, g = xyxy(pred)[:, :, None], xyxy(tgt)[:, None]
    inter = np.prod(
        np.clip(np.minimum(p[..., 2:], g[..., 2:]) - np.maximum(p[..., :2], g[..., :2]), 0, None),
        -1,
    )
    union = np.prod(p[..., 2:] - p[..., :2], -1) + np.prod(g[..., 2:] - g[..., :2], -1) - inter
    hull = np.prod(np.maximum(p[..., 2:], g[..., 2:]) - np.minimum(p[..., :2], g[..., :2]), -1)
    giou = inter / union - (hull - union) / hull
    prob = rng.dirichlet(np.ones(92), (b, q))[:, :, rng.integers(0, 91, t)]
    return (5 * l1 - 2 * giou - prob).astype(np.float32)


def timings_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Times the functions in turn, ``repeats`` rounds, so that load bursts hit all alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(1e3 * (time.perf_counter() - start))
    return times


def compile_ms(fn: Callable, *args: object) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return 1e3 * (time.perf_counter() - start)


def scipy_loop(costs: jax.Array, counts: np.ndarray) -> list:
    host = np.asarray(costs)  # the device -> host copy of DETR's matcher
    return [scipy_lsa(c[:, :n]) for c, n in zip(host, counts, strict=True)]


@jax.jit
def optax_batched(costs: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    padded = jnp.where(mask[:, None, :], costs, 0.0)
    return jax.vmap(optax.assignment.hungarian_algorithm)(padded)


def total_cost(costs: np.ndarray, q_of_t: np.ndarray) -> float:
    b, t = np.nonzero(q_of_t >= 0)
    return float(costs.astype(np.float64)[b, q_of_t[b, t], t].sum())


def run(name: str, b: int, q: int, t: int, counts: np.ndarray, repeats: int, rng) -> None:
    costs_np = detr_like_costs(rng, b, q, t)
    mask_np = np.arange(t)[None] < counts[:, None]
    costs, mask = jnp.asarray(costs_np), jnp.asarray(mask_np)

    exact = jax.jit(matching.hungarian_match)
    greedy = jax.jit(matching.greedy_match)
    compile_jv = compile_ms(exact, costs, mask)
    # XLA alone (method="xla": on the CPU the XLA solver's rounds instead of the native C++
    # solver, on CUDA the flat loop instead of the Pallas kernel).
    xla_loop = jax.jit(functools.partial(matching.hungarian_match, method="xla"))
    compile_xla_loop = compile_ms(xla_loop, costs, mask)
    got_loop = total_cost(costs_np, np.asarray(xla_loop(costs, mask)[0]))
    # The XLA CPU solver without its row-reduction rounds for dense problems (the solver
    # before they were added): the threshold is read while tracing.
    no_reduction = jax.jit(lambda c, m: matching.hungarian_match.__wrapped__(c, m, method="xla"))
    dense_rows = augmenting_path._DENSE_ROWS
    augmenting_path._DENSE_ROWS = 10**9
    compile_no_reduction = compile_ms(no_reduction, costs, mask)
    augmenting_path._DENSE_ROWS = dense_rows
    compile_greedy = compile_ms(greedy, costs, mask)
    compile_optax = compile_ms(optax_batched, costs, mask)

    ref = sum(
        c[:, :n].astype(np.float64)[r, k].sum()
        for c, n, (r, k) in zip(costs_np, counts, scipy_loop(costs, counts), strict=True)
    )
    got = total_cost(costs_np, np.asarray(exact(costs, mask)[0]))
    greedy_total = total_cost(costs_np, np.asarray(greedy(costs, mask)[0]))
    rows, cols = jax.device_get(optax_batched(costs, mask))  # [B, T]: query, target pairs
    image = np.arange(b)[:, None]
    real = mask_np[image, cols]
    optax_total = float(costs_np.astype(np.float64)[image, rows, cols][real].sum())

    fns = {
        "jaxvision.hungarian_match": lambda: exact(costs, mask),
        "scipy loop (incl. copy to host)": lambda: scipy_loop(costs, counts),
        "jaxvision, XLA solver (method=xla)": lambda: xla_loop(costs, mask),
        "jaxvision, XLA, no row reduction": lambda: no_reduction(costs, mask),
        "jaxvision.greedy_match (approx.)": lambda: greedy(costs, mask),
    }
    times = timings_ms(fns, repeats)
    times |= timings_ms(
        {"optax hungarian, jit+vmap": lambda: optax_batched(costs, mask)}, max(3, repeats // 10)
    )
    compiles = {
        "jaxvision, XLA solver (method=xla)": compile_xla_loop,
        "jaxvision.hungarian_match": compile_jv,
        "jaxvision, XLA, no row reduction": compile_no_reduction,
        "optax hungarian, jit+vmap": compile_optax,
        "jaxvision.greedy_match (approx.)": compile_greedy,
    }

    print(f"\n{name}: {b} x {q} queries x {counts.min()}..{counts.max()} targets (padded to {t})")
    print(
        f"  total cost: scipy {ref:.6f}, jaxvision {got:.6f} (rel. diff "
        f"{abs(got - ref) / abs(ref):.1e}), XLA solver {got_loop:.6f}, optax "
        f"{optax_total:.6f}, greedy {greedy_total:.6f}"
    )
    print(f"  {'':34s}{'median ms':>10s}{'min ms':>9s}{'compile ms':>12s}{'peer / jaxvision':>18s}")
    t_jv = statistics.median(times["jaxvision.hungarian_match"])
    for label in [
        "jaxvision.hungarian_match",
        "scipy loop (incl. copy to host)",
        "jaxvision, XLA solver (method=xla)",
        "jaxvision, XLA, no row reduction",
        "optax hungarian, jit+vmap",
        "jaxvision.greedy_match (approx.)",
    ]:
        if label not in times:
            continue
        ms = statistics.median(times[label])
        compile_text = f"{compiles[label]:.0f}" if compiles.get(label) else "-"
        print(
            f"  {label:34s}{ms:10.3f}{min(times[label]):9.3f}{compile_text:>12s}{ms / t_jv:18.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, optax {optax.__version__}")
    print(f"load average at the start: {open('/proc/loadavg').read().split()[:3]}")
    run("DETR batch", 64, 100, 20, rng.integers(1, 20, 64), args.repeats, rng)
    run("large images", 4, 300, 100, np.array([100, 1, 37, 64]), args.repeats, rng)
    run("dense", 8, 100, 100, np.full(8, 100), args.repeats, rng)
    print(f"load average at the end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
