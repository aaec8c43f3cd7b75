"""A small data-parallel run: ``python -m jaxvision.launch --nproc 2 dp_script.py OUT.npz``.

Imported by the tests for the single-process reference; run by the launcher as a script.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxvision import parallel

STEPS = 3
GLOBAL_BATCH = 16


def init_params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "w1": jax.random.normal(k1, (6, 16)) * 0.3,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(k2, (16, 3)) * 0.3,
    }


def loss_fn(params, model_state, batch, rng, axis_name):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    err = h @ params["w2"] - batch["y"]
    count = lax.psum(jnp.sum(batch["w"]), axis_name) / lax.axis_size(axis_name)
    return jnp.sum(batch["w"][:, None] * err**2) / count, (model_state, {})


def batches():
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        yield {
            "x": rng.normal(size=(GLOBAL_BATCH, 6)).astype(np.float32),
            "y": rng.normal(size=(GLOBAL_BATCH, 3)).astype(np.float32),
            "w": rng.integers(0, 3, size=(GLOBAL_BATCH,)).astype(np.float32),
        }


def train():
    """Runs STEPS steps on a mesh of every device of every process; (params, losses)."""
    mesh = parallel.make_mesh()
    opt = optax.adam(1e-2)
    state = parallel.replicate(parallel.TrainState.create(init_params(), opt), mesh)
    step = parallel.data_parallel_step(loss_fn, opt, mesh)
    rows = parallel.process_batch_slice(GLOBAL_BATCH, mesh)
    losses = []
    for batch in batches():
        local = jax.tree.map(lambda x: x[rows], batch)
        state, metrics = step(state, parallel.shard_batch(local, mesh), jax.random.key(0))
        losses.append(float(metrics["loss"]))
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), state.params)
    return params, np.asarray(losses)


if __name__ == "__main__":
    parallel.initialize()
    params, losses = train()
    print(f"process {jax.process_index()}: {jax.device_count()} devices, losses {losses}")
    if jax.process_index() == 0:
        np.savez(sys.argv[1], losses=losses, **params)
