"""Per-example gradients of the torch.func tutorial's CNN: Python loops against vmap(grad).

    python experiments/contrast/per_example_grads.py [--batch 64] [--repeats 5]

The model of PyTorch's "Per-sample-gradients" tutorial (conv 1->32->64, 3x3, ReLU,
2x2 max-pool, fc 9216->128->10, log-softmax, NLL loss) on 28 x 28 inputs, batch 64, with
the same weights on both sides. Timed in one run, medians over repeats (the four
methods interleaved):

- PyTorch: a Python loop of one ``backward()`` per example, and
  ``torch.func.vmap(torch.func.grad(loss))`` over ``functional_call`` (eager, no compile);
- JAX: a Python loop calling a jit-compiled ``jax.grad`` per example, and
  ``jax.jit(jax.vmap(jax.grad(loss)))``, both compiled ahead of time
  (``.lower(...).compile()``, printed apart).

The per-example gradients of both sides are checked against each other. Anchor: the DP-SGD
study (Subramani et al., NeurIPS 2021) reports JAX's vmap(grad) up to 50x faster than the
alternatives; here the ratio is measured, under load, on this machine's CPU.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn


class SimpleCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = torch.flatten(torch.nn.functional.max_pool2d(x, 2), 1)
        return torch.log_softmax(self.fc2(torch.relu(self.fc1(x))), dim=1)


def jax_params(model):
    """The torch weights in NHWC / HWIO layout (fc1's rows reordered from CHW to HWC)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    fc1 = sd["fc1.weight"].reshape(128, 64, 12, 12).transpose(2, 3, 1, 0).reshape(9216, 128)
    return {
        "conv1": (sd["conv1.weight"].transpose(2, 3, 1, 0), sd["conv1.bias"]),
        "conv2": (sd["conv2.weight"].transpose(2, 3, 1, 0), sd["conv2.bias"]),
        "fc1": (fc1, sd["fc1.bias"]),
        "fc2": (sd["fc2.weight"].T, sd["fc2.bias"]),
    }


def jax_loss(params, x, y):
    """NLL of one example: ``x`` ``[28, 28, 1]``, ``y`` an int label."""

    def conv(x, wb):
        out = jax.lax.conv_general_dilated(
            x[None], wb[0], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(out[0] + wb[1])

    h = conv(conv(x, params["conv1"]), params["conv2"])
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (2, 2, 1), (2, 2, 1), "VALID")
    h = jax.nn.relu(h.reshape(-1) @ params["fc1"][0] + params["fc1"][1])
    logp = jax.nn.log_softmax(h @ params["fc2"][0] + params["fc2"][1])
    return -logp[y]


# One compiled per-example gradient, shared by the timing and the check.
per_example_grads = jax.jit(jax.vmap(jax.grad(jax_loss), in_axes=(None, 0, 0)))


def interleaved_medians(fns, repeats):
    """Median seconds of each function, called in turn every repeat (fair under load)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def torch_methods(model, x, y):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(params, xi, yi):
        out = torch.func.functional_call(model, params, (xi[None],))
        return torch.nn.functional.nll_loss(out, yi[None])

    vmapped = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))

    def loop():
        grads = []
        for i in range(len(x)):
            model.zero_grad()
            torch.nn.functional.nll_loss(model(x[i : i + 1]), y[i : i + 1]).backward()
            grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        return grads

    return {"torch loop": loop, "torch.func vmap(grad)": lambda: vmapped(params, x, y)}


def jax_methods(params, x, y):
    """The two JAX methods, compiled ahead of time; also returns each compile time."""
    start = time.perf_counter()
    one = jax.jit(jax.grad(jax_loss)).lower(params, x[0], y[0]).compile()
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = per_example_grads.lower(params, x, y).compile()
    vmap_s = time.perf_counter() - start
    methods = {
        "jax loop of jit(grad)": lambda: jax.block_until_ready(
            [one(params, x[i], y[i]) for i in range(len(x))]
        ),
        "jax jit(vmap(grad))": lambda: jax.block_until_ready(batched(params, x, y)),
    }
    return methods, {"jax loop of jit(grad)": loop_s, "jax jit(vmap(grad))": vmap_s}


def check(torch_grads, jax_grads):
    """conv1 and fc2 per-example weight gradients of the two sides agree."""
    conv1 = np.asarray(jax_grads["conv1"][0]).transpose(0, 4, 3, 1, 2)
    fc2 = np.asarray(jax_grads["fc2"][0]).transpose(0, 2, 1)
    for want, got in ((torch_grads["conv1.weight"], conv1), (torch_grads["fc2.weight"], fc2)):
        want = want.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = SimpleCNN()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    xt, yt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)
    params = jax.tree.map(jnp.asarray, jax_params(model))
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    jax_side, compile_s = jax_methods(params, xj, yj)
    methods = {**torch_methods(model, xt, yt), **jax_side}
    for fn in methods.values():
        fn()  # warm-up
    check(methods["torch.func vmap(grad)"](), per_example_grads(params, xj, yj))
    times = interleaved_medians(methods, args.repeats)
    base = times["torch loop"]
    print(
        f"per-example gradients, torch.func tutorial CNN, batch {args.batch}, CPU "
        f"(torch {torch.get_num_threads()} threads), median of {args.repeats}"
    )
    print("| method | ms per batch | torch loop / method | jax compile s |")
    print("|---|---|---|---|")
    for name, t in times.items():
        extra = f"{compile_s[name]:.2f}" if name in compile_s else "-"
        print(f"| {name} | {1e3 * t:.1f} | {base / t:.1f} | {extra} |")
    ratio = times["torch.func vmap(grad)"] / times["jax jit(vmap(grad))"]
    print(f"torch.func vmap(grad) / jax jit(vmap(grad)): {ratio:.2f}")
    return {"ms": {k: 1e3 * v for k, v in times.items()}, "compile_s": compile_s}


if __name__ == "__main__":
    main()
