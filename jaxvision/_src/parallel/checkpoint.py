"""Checkpoints through Orbax: train state, RNG and the input pipeline's position.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so
a save interrupted by a crash or SIGKILL leaves no half-written step behind: the last
complete checkpoint stays the latest. A step directory that is damaged afterwards (a
truncated file, a lost disk block) raises :class:`CheckpointError` naming it, and every
earlier step stays restorable with ``restore(..., step=k)``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxvision._src.export import export


@export("parallel.CheckpointError")
class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names its step and path."""


@export("parallel.Restored")
@dataclasses.dataclass(frozen=True)
class Restored:
    """What :meth:`CheckpointManager.restore` returns.

    Attributes:
      step: the checkpoint's step number.
      state: the restored pytree, with the structure, dtypes and shardings of the template.
      rng: the restored PRNG key (same kind as the template key), or ``None``.
      data_state: the input pipeline's position (a JSON-compatible dict), or ``None``.
    """

    step: int
    state: Any
    rng: jax.Array | None
    data_state: dict | None


def _abstract(tree: Any) -> Any:
    def spec(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        x = np.asarray(x)
        return jax.ShapeDtypeStruct(x.shape, x.dtype)

    return jax.tree.map(spec, tree)


def _key_data(rng: jax.Array) -> np.ndarray:
    """The key's raw uint32 words, on the host: restored keys are not bound to a device."""
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return np.asarray(rng)


@export("parallel.CheckpointManager")
class CheckpointManager:
    """Saves and restores training checkpoints in ``directory/<step>`` with Orbax.

    Each checkpoint holds the state pytree (usually a :class:`TrainState`: params,
    optimizer state, step), the RNG key, and the input pipeline's state from
    ``loader.get_state()``. Only the newest ``max_to_keep`` are kept. Saves are
    synchronous, so a returned ``save`` is on disk. Every process of a multi-process run
    calls ``save`` and ``restore`` (Orbax coordinates the writes).

    Example::

      ckpt = parallel.CheckpointManager("/tmp/run", max_to_keep=3)
      start = 0
      if ckpt.latest_step() is not None:
          r = ckpt.restore(state, rng=rng)
          state, rng, start = r.state, r.rng, r.step
          loader.set_state(r.data_state)
      for i in range(start, num_steps):
          state, metrics = step(state, next(loader), jax.random.fold_in(rng, i))
          ckpt.save(i + 1, state, rng=rng, data_state=loader.get_state())

    Args:
      directory: where step directories are written; created if missing.
      max_to_keep: how many of the newest checkpoints to keep; ``None`` keeps all.
      save_interval_steps: ``save`` writes only on multiples of it (unless ``force``).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = 3,
        save_interval_steps: int = 1,
    ) -> None:
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
        if not isinstance(save_interval_steps, int) or save_interval_steps < 1:
            raise ValueError(
                f"save_interval_steps must be a positive int, got {save_interval_steps!r}"
            )
        self.directory = os.path.abspath(os.fspath(directory))
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                save_interval_steps=save_interval_steps,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=False,
            ),
            item_names=("state", "data"),
        )

    def step_path(self, step: int) -> str:
        """The directory of checkpoint ``step``."""
        return os.path.join(self.directory, str(step))

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or ``None`` if there is none."""
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state: Any,
        *,
        rng: jax.Array | None = None,
        data_state: dict | None = None,
        force: bool = False,
    ) -> bool:
        """Writes checkpoint ``step``; returns whether it was written (see the interval).

        Args:
          step: the step number, increasing from save to save.
          state: a pytree of arrays (a :class:`TrainState`).
          rng: a PRNG key (typed or raw ``uint32``) to restore with the state.
          data_state: the input pipeline's JSON-compatible position.
          force: write even off the save interval.
        """
        if not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        item = {"train": state, "rng": None if rng is None else _key_data(rng)}
        saved = self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(item),
                data=ocp.args.JsonSave({"data_state": data_state}),
            ),
            force=force,
        )
        self._manager.wait_until_finished()
        return bool(saved)

    def restore(
        self, state: Any, *, rng: jax.Array | None = None, step: int | None = None
    ) -> Restored:
        """Reads checkpoint ``step`` (default: the latest) into the structure of ``state``.

        Args:
          state: a template pytree (e.g. a freshly initialised, replicated TrainState):
            the restored arrays take its structure, dtypes and shardings.
          rng: a template key, needed to restore the saved key.
          step: which checkpoint; ``None``: the latest.

        Returns:
          A :class:`Restored`.

        Raises:
          CheckpointError: no checkpoint exists, or checkpoint ``step`` cannot be read;
            the message names the step, its path and the other steps available.
        """
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory}")
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; available: {steps}"
            )
        template = {"train": state, "rng": None if rng is None else _key_data(rng)}
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(template)),
                    data=ocp.args.JsonRestore(),
                ),
            )
            item = out["state"]
            data_state = out["data"]["data_state"]
            jax.block_until_ready(item)
        except Exception as e:  # Orbax and TensorStore raise many types for a bad file.
            others = [s for s in steps if s != step]
            raise CheckpointError(
                f"checkpoint for step {step} at {self.step_path(step)} is unreadable "
                f"({type(e).__name__}: {e}); other checkpoints: {others}, restore one with "
                "restore(..., step=k)"
            ) from e
        restored_rng = None if item["rng"] is None else jnp.asarray(np.asarray(item["rng"]))
        if rng is not None and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
            restored_rng = jax.random.wrap_key_data(restored_rng, impl=jax.random.key_impl(rng))
        return Restored(step=step, state=item["train"], rng=restored_rng, data_state=data_state)

    def close(self) -> None:
        """Waits for pending writes and releases Orbax's resources."""
        self._manager.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
