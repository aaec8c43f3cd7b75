"""Hessian-vector products: four JAX compositions against torch's hvp, vhp and torch.func.

    python experiments/contrast/hvp.py [--shape 30 40] [--repeats 200]

``f(X) = sum(tanh(X)^2)`` on ``X`` 30 x 40 (the JAX autodiff cookbook's example), whose
Hessian is diagonal: ``H v = 2 (1 - t^2)(1 - 3 t^2) v`` with ``t = tanh(X)``, the exact
value every method is checked against. JAX, each under ``jax.jit`` (compile time printed
apart): forward-over-reverse ``jvp(grad(f))`` (the cookbook's recommendation),
reverse-over-forward ``grad(jvp(f))``, reverse-over-reverse ``grad(vdot(grad(f), v))``, and
the dense ``hessian(f) @ v``. PyTorch, eager: ``torch.autograd.functional.hvp`` (documented
as "significantly slower than vhp", it uses the double-backward trick),
``torch.autograd.functional.vhp``, and ``torch.func.jvp(torch.func.grad(f))``
(forward-over-reverse). Medians over repeats of one call each, the methods interleaved;
JAX's are compiled ahead of time (``.lower(...).compile()``, timed apart).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch


def f_jax(x):
    return jnp.sum(jnp.tanh(x) ** 2)


def f_torch(x):
    return torch.sum(torch.tanh(x) ** 2)


def jax_methods(shape):
    n = int(np.prod(shape))
    return {
        "jax fwd-over-rev jvp(grad)": lambda x, v: jax.jvp(jax.grad(f_jax), (x,), (v,))[1],
        "jax rev-over-fwd grad(jvp)": lambda x, v: jax.grad(
            lambda x: jax.jvp(f_jax, (x,), (v,))[1]
        )(x),
        "jax rev-over-rev grad(vdot(grad))": lambda x, v: jax.grad(
            lambda x: jnp.vdot(jax.grad(f_jax)(x), v)
        )(x),
        "jax dense hessian @ v": lambda x, v: (
            jax.hessian(f_jax)(x).reshape(n, n) @ v.reshape(n)
        ).reshape(shape),
    }


def torch_methods():
    return {
        "torch.autograd.functional.hvp": lambda x, v: torch.autograd.functional.hvp(f_torch, x, v)[
            1
        ],
        "torch.autograd.functional.vhp": lambda x, v: torch.autograd.functional.vhp(f_torch, x, v)[
            1
        ],
        "torch.func jvp(grad)": lambda x, v: torch.func.jvp(torch.func.grad(f_torch), (x,), (v,))[
            1
        ],
    }


def interleaved_medians(fns, repeats):
    """Median seconds of each function, called in turn every repeat (fair under load)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            fn()  # untimed: absorbs the switch from the other side (torch's idle threads spin)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", type=int, nargs=2, default=(30, 40))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    x, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    t = np.tanh(x.astype(np.float64))
    exact = 2 * (1 - t**2) * (1 - 3 * t**2) * v

    xj, vj = jnp.asarray(x), jnp.asarray(v)
    xt, vt = torch.from_numpy(x), torch.from_numpy(v)
    calls, compile_s = {}, {}
    for name, fn in jax_methods(shape).items():
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(xj, vj).compile()
        compile_s[name] = time.perf_counter() - start
        calls[name] = lambda c=compiled: jax.block_until_ready(c(xj, vj))
    for name, fn in torch_methods().items():
        calls[name] = lambda fn=fn: fn(xt, vt)
    for name, call in calls.items():
        out = np.asarray(call())
        np.testing.assert_allclose(out, exact, rtol=1e-4, atol=1e-5, err_msg=name)
    rows = interleaved_medians(calls, args.repeats)
    base = rows["torch.autograd.functional.vhp"]
    print(
        f"HVP of sum(tanh(X)^2), X {shape[0]}x{shape[1]}, float32, CPU, median of "
        f"{args.repeats}; all checked against the exact diagonal Hessian"
    )
    print("| method | us per call | torch vhp / method | jax compile s |")
    print("|---|---|---|---|")
    for name, sec in rows.items():
        extra = f"{compile_s[name]:.2f}" if name in compile_s else "-"
        print(f"| {name} | {1e6 * sec:.1f} | {base / sec:.2f} | {extra} |")
    return {"us": {k: 1e6 * s for k, s in rows.items()}, "compile_s": compile_s}


if __name__ == "__main__":
    main()
