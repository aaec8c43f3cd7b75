"""Side effects under ``jax.jit``, against PyTorch eager.

    python experiments/contrast/jit_side_effects.py

A Python side effect inside a jit-compiled function (``print``, appending to a list,
reading a global) runs once, while JAX traces the function, and never again for inputs of
the same shape and dtype; the compiled program only computes arrays. ``jax.debug.print``
is staged into the program and runs on every call. In PyTorch eager every line runs every
call. A global read at trace time is frozen into the compiled program: changing it later
is silently ignored until something forces a retrace (a new shape).
"""

import argparse

import jax
import jax.numpy as jnp
import torch


def torch_side(calls):
    log = []
    scale = {"value": 1.0}

    def f(x):
        log.append("python side effect")
        return x * scale["value"]

    outs = []
    for i in range(calls):
        scale["value"] = float(i + 1)
        outs.append(float(f(torch.ones(())).item()))
    return len(log), outs


def jax_side(calls):
    log, staged = [], []
    scale = {"value": 1.0}

    @jax.jit
    def f(x):
        log.append("python side effect")  # trace time only
        jax.debug.callback(lambda: staged.append("staged"))  # every call
        return x * scale["value"]  # read at trace time, baked into the program

    outs = []
    for i in range(calls):
        scale["value"] = float(i + 1)
        outs.append(float(jax.block_until_ready(f(jnp.ones(())))))
    jax.effects_barrier()
    traces, runs = len(log), len(staged)
    retraced = float(f(jnp.ones((2,)))[0])  # a new shape: traced again, reads the global
    return traces, runs, outs, retraced


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args(argv)
    torch_log, torch_outs = torch_side(args.calls)
    jax_log, jax_staged, jax_outs, retraced = jax_side(args.calls)
    print(f"PyTorch eager, {args.calls} calls, scale set to 1, 2, 3 before each:")
    print(f"  Python side effects ran {torch_log} times; outputs {torch_outs}")
    print(f"JAX jit, {args.calls} calls, same:")
    print(
        f"  Python side effects ran {jax_log} time(s) (tracing); jax.debug.callback ran "
        f"{jax_staged} times; outputs {jax_outs}"
    )
    print(f"  a call with a new shape retraces and reads scale = {args.calls}: {retraced}")
    print("Differs: under jit Python is a program generator: side effects and global reads")
    print("  happen at trace time; anything that must run per call is staged explicitly")
    print("  (jax.debug.print / callback) or passed as an argument.")
    assert torch_log == args.calls and torch_outs == [float(i + 1) for i in range(args.calls)]
    assert jax_log == 1 and jax_staged == args.calls and jax_outs == [1.0] * args.calls
    assert retraced == float(args.calls)
    return {"torch_outs": torch_outs, "jax_outs": jax_outs, "jax_traces": jax_log}


if __name__ == "__main__":
    main()
