"""Training with checkpoints every step: ``resume_script.py DIR STEPS [KILL_IN_SAVE]``.

Resumes from the latest checkpoint in DIR (state, RNG, loader position). With
KILL_IN_SAVE the process SIGKILLs itself while committing that step's checkpoint, after
its files are written and before Orbax renames the temporary directory into place.
Imported by the tests, which run the uninterrupted reference in-process.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision import data, parallel


class Points:
    def __len__(self):
        return 64

    def __getitem__(self, i):
        x = np.random.default_rng(i).normal(size=6).astype(np.float32)
        return {"x": x, "y": np.float32(np.sin(x).sum())}


def loss_fn(params, model_state, batch, rng, axis_name):
    h = jnp.tanh(batch["x"] @ params["w1"])
    keep = jax.random.bernoulli(rng, 0.8, h.shape)  # dropout: the RNG matters
    pred = (jnp.where(keep, h / 0.8, 0.0) @ params["w2"])[:, 0]
    return jnp.mean((pred - batch["y"]) ** 2), (model_state, {})


def train(directory, steps):
    """Runs to ``steps``, resuming from ``directory``; returns the final params."""
    mesh = parallel.make_mesh()
    opt = optax.adam(3e-2)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {"w1": jax.random.normal(k1, (6, 8)), "w2": jax.random.normal(k2, (8, 1))}
    state = parallel.replicate_on_mesh(parallel.TrainState.create(params, opt), mesh)
    rng = jax.random.key(1)
    loader = data.Loader(Points(), global_batch_size=16, seed=0, mesh=mesh)
    step = parallel.data_parallel_step(loss_fn, opt, mesh)
    ckpt = parallel.CheckpointManager(directory, max_to_keep=2)
    if ckpt.latest_step() is not None:
        restored = ckpt.restore(state, rng=rng)
        state, rng = restored.state, restored.rng
        loader.set_state(restored.data_state)
    while int(state.step) < steps:
        rng, key = jax.random.split(rng)
        state, _ = step(state, next(loader), key)
        ckpt.save(int(state.step), state, rng=rng, data_state=loader.get_state())
    ckpt.close()
    return jax.tree.map(np.asarray, state.params)


if __name__ == "__main__":
    directory, steps = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:
        doomed = sys.argv[3]
        rename = os.rename

        def rename_then_die(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == doomed:
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(src, dst, *args, **kwargs)

        os.rename = rename_then_die
    train(directory, steps)
