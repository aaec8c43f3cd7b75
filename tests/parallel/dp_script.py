"""A small data-parallel run: ``python -m jaxvision.launch --nproc 2 dp_script.py OUT.npz``.

Batches come from ``data.Loader``, each process decoding only its rows; at the end every
process saves a checkpoint and restores it. Imported by the tests for the single-process
reference; run by the launcher as a script.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxvision import data, parallel

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


class Examples:
    def __len__(self):
        return 40

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        return {
            "x": rng.normal(size=6).astype(np.float32),
            "y": rng.normal(size=3).astype(np.float32),
            "w": np.float32(rng.integers(0, 3)),
        }


def train(checkpoint_dir=None):
    """Runs STEPS steps on a mesh of every device of every process; (params, losses)."""
    mesh = parallel.make_mesh()
    opt = optax.adam(1e-2)
    state = parallel.replicate(parallel.TrainState.create(init_params(), opt), mesh)
    step = parallel.data_parallel_step(loss_fn, opt, mesh, donate=False)
    loader = data.Loader(Examples(), global_batch_size=GLOBAL_BATCH, seed=0, mesh=mesh)
    losses = []
    for _ in range(STEPS):
        state, metrics = step(state, next(loader), jax.random.key(0))
        losses.append(float(metrics["loss"]))
    if checkpoint_dir is not None:
        with parallel.CheckpointManager(checkpoint_dir) as ckpt:
            ckpt.save(STEPS, state, data_state=loader.get_state())
            restored = ckpt.restore(state)
        assert restored.data_state == {
            "batches": STEPS,
            "seed": 0,
            "global_batch_size": GLOBAL_BATCH,
        }
        for a, b in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state), strict=True):
            assert a.sharding == b.sharding
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    params = jax.tree.map(np.asarray, state.params)
    return params, np.asarray(losses)


if __name__ == "__main__":
    parallel.initialize()
    params, losses = train(sys.argv[2])
    print(f"process {jax.process_index()}: {jax.device_count()} devices, losses {losses}")
    if jax.process_index() == 0:
        np.savez(sys.argv[1], losses=losses, **params)
