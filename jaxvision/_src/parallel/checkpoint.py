"""Verified checkpoints through Orbax: train state, RNG and the input pipeline's position.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so
a save interrupted by a crash or SIGKILL leaves no half-written step behind: the last
complete checkpoint stays the latest. Every saved array's SHA-256 is stored with the step
and checked on restore, so a step damaged afterwards (flipped bytes inside an array
file, a truncated file, a lost disk block) raises :class:`CheckpointError` naming the step
and what is damaged instead of restoring wrong weights; ``restore(..., fallback=True)``
then takes the newest intact step. ``read_only=True`` opens a folder for evaluation
without creating anything in it. :class:`WorkdirLock` keeps a second run out of a
workdir that a run is writing to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxvision._src.export import export


@export("parallel.CheckpointError")
class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable; the message names its step and path."""


@export("parallel.WorkdirLockError")
class WorkdirLockError(RuntimeError):
    """Another live process holds the workdir; the message names its pid and host."""


@export("parallel.WorkdirLock")
class WorkdirLock:
    """An exclusive lock on a workdir while a run writes to it (``<workdir>/.lock``).

    The lock is an ``flock`` on the file, so the operating system drops it when its holder
    exits, even by SIGKILL: a stale file never blocks the next run. The file records the
    holder's pid, host and start time, which the error of a second run names. (On network
    file systems without ``flock``, run one writer per workdir by hand.)

    Examples:
      >>> import tempfile
      >>> d = tempfile.mkdtemp()
      >>> lock = WorkdirLock(d)
      >>> try:
      ...     WorkdirLock(d)
      ... except WorkdirLockError as e:
      ...     print("held by pid", str(os.getpid()) in str(e))
      held by pid True
      >>> lock.release()
      >>> WorkdirLock(d).release()

    Args:
      workdir: the folder to lock (must exist).

    Raises:
      WorkdirLockError: another process (or another lock in this one) holds it.
    """

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.path = os.path.join(os.fspath(workdir), ".lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            try:
                info = json.loads(holder)
                who = f"pid {info['pid']} on host {info['host']} (since {info['since']})"
            except (ValueError, KeyError, TypeError):
                who = "another process"
            raise WorkdirLockError(
                f"{os.fspath(workdir)} is in use by {who}: wait for that run to end, or "
                "pass another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(
            fd,
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": stamp}).encode(),
        )
        os.fsync(fd)
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlocks (the file stays, unlocked)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@export("parallel.Restored")
@dataclasses.dataclass(frozen=True)
class Restored:
    """What :meth:`CheckpointManager.restore` returns.

    Attributes:
      step: the checkpoint's step number.
      state: the restored pytree, with the structure, dtypes and shardings of the template.
      rng: the restored PRNG key (same kind as the template key), or ``None``.
      data_state: the input pipeline's position (a JSON-compatible dict), or ``None``.
      skipped: with ``fallback``, one line per newer step that was damaged and skipped.
    """

    step: int
    state: Any
    rng: jax.Array | None
    data_state: dict | None
    skipped: tuple[str, ...] = ()


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


def _host_array(x: Any) -> np.ndarray:
    """The whole value of a leaf on this host (replicated arrays: one local copy)."""
    if isinstance(x, jax.Array):
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _checksums(tree: Any) -> dict[str, str]:
    """SHA-256 of every array leaf (dtype, shape and bytes), keyed by its pytree path."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        a = np.ascontiguousarray(_host_array(leaf))
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        out[jax.tree_util.keystr(path)] = h.hexdigest()
    return out


def _what_is_unreadable(e: BaseException) -> str:
    """The damaged file if TensorStore names one, else the error's first line."""
    text = str(e)
    files = re.findall(r'(?:decoding|reading) local file "([^"]+)"', text)
    if files:
        return f"unreadable file {files[-1]}"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"unreadable ({type(e).__name__}: {first})"


def _drop_closed_loop_reports() -> None:
    """From now on, drop the "Event loop is closed" reports of late TensorStore callbacks.

    After a failed restore, reads still in flight finish on TensorStore's threads and call
    back into Orbax's event loop, already closed; each prints a traceback through
    ``sys.unraisablehook``, at any later time. Only that exact report is dropped.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_jaxvision_drops_closed_loop", False):
        return

    def hook(report: Any) -> None:
        if isinstance(report.exc_value, RuntimeError) and "Event loop is closed" in str(
            report.exc_value
        ):
            return
        previous(report)

    hook._jaxvision_drops_closed_loop = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@contextlib.contextmanager
def _quiet_asyncio() -> Iterator[None]:
    """Drops asyncio's "Task exception was never retrieved" reports of a failed restore.

    TensorStore reads every array in its own task; when one fails, the others' errors are
    reported by asyncio as they are collected, dozens of tracebacks that say the same as
    the one :class:`CheckpointError`. Collecting them here, silenced, ends that.
    """
    _drop_closed_loop_reports()
    logger = logging.getLogger("asyncio")

    def drop(record: logging.LogRecord) -> bool:
        return "never retrieved" not in record.getMessage()

    logger.addFilter(drop)
    try:
        yield
    finally:
        gc.collect()
        logger.removeFilter(drop)


@export("parallel.CheckpointManager")
class CheckpointManager:
    """Saves and restores verified training checkpoints in ``directory/<step>`` with Orbax.

    Each checkpoint holds the state pytree (usually a :class:`TrainState`: params,
    optimizer state, step), the RNG key, the input pipeline's state from
    ``loader.get_state()``, and a SHA-256 of every saved array, checked on restore. Only
    the newest ``max_to_keep`` are kept. Saves are synchronous, so a returned ``save`` is
    on disk. Every process of a multi-process run calls ``save`` and ``restore`` (Orbax
    coordinates the writes).

    Example::

      ckpt = parallel.CheckpointManager("/tmp/run", max_to_keep=3)
      start = 0
      if ckpt.latest_step() is not None:
          r = ckpt.restore(state, rng=rng, fallback=True, log=print)
          state, rng, start = r.state, r.rng, r.step
          loader.set_state(r.data_state)
      for i in range(start, num_steps):
          state, metrics = step(state, next(loader), jax.random.fold_in(rng, i))
          ckpt.save(i + 1, state, rng=rng, data_state=loader.get_state())

    Args:
      directory: where step directories are written; created if missing (unless
        ``read_only``).
      max_to_keep: how many of the newest checkpoints to keep; ``None`` keeps all.
      save_interval_steps: ``save`` writes only on multiples of it (unless ``force``).
      read_only: open for restoring only: nothing is created, ``save`` raises.

    Raises:
      CheckpointError: ``read_only`` and ``directory`` does not exist.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = 3,
        save_interval_steps: int = 1,
        read_only: bool = False,
    ) -> None:
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(f"max_to_keep must be a positive int or None, got {max_to_keep!r}")
        if not isinstance(save_interval_steps, int) or save_interval_steps < 1:
            raise ValueError(
                f"save_interval_steps must be a positive int, got {save_interval_steps!r}"
            )
        self.directory = os.path.abspath(os.fspath(directory))
        self.read_only = read_only
        if read_only and not os.path.isdir(self.directory):
            raise CheckpointError(f"no checkpoint directory {self.directory}")
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                save_interval_steps=save_interval_steps,
                enable_async_checkpointing=False,
                cleanup_tmp_directories=False,
                read_only=read_only,
                create=not read_only,
                save_root_metadata=not read_only,
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
        """Writes checkpoint ``step`` with its checksums; returns whether it was written.

        Args:
          step: the step number, increasing from save to save.
          state: a pytree of arrays (a :class:`TrainState`).
          rng: a PRNG key (typed or raw ``uint32``) to restore with the state.
          data_state: the input pipeline's JSON-compatible position.
          force: write even off the save interval.
        """
        if self.read_only:
            raise CheckpointError(f"{self.directory} is opened read-only")
        if not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        item = {"train": state, "rng": None if rng is None else _key_data(rng)}
        saved = self._manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(item),
                data=ocp.args.JsonSave({"data_state": data_state, "checksums": _checksums(item)}),
            ),
            force=force,
        )
        self._manager.wait_until_finished()
        return bool(saved)

    def restore(
        self,
        state: Any,
        *,
        rng: jax.Array | None = None,
        step: int | None = None,
        fallback: bool = False,
        log: Callable[[str], Any] | None = None,
    ) -> Restored:
        """Reads checkpoint ``step`` (default: the latest) into the structure of ``state``.

        Every array is checked against the checksum saved with the step.

        Args:
          state: a template pytree (e.g. a freshly initialised, replicated TrainState):
            the restored arrays take its structure, dtypes and shardings.
          rng: a template key, needed to restore the saved key.
          step: which checkpoint; ``None``: the latest.
          fallback: with ``step=None``, skip damaged steps to the newest intact one.
          log: called with one line per skipped step (e.g. ``print``).

        Returns:
          A :class:`Restored`.

        Raises:
          CheckpointError: no checkpoint exists, or checkpoint ``step`` is damaged (the
            message names the step, its path and what is damaged); with ``fallback``, when
            every step is damaged.
        """
        steps = self.all_steps()
        if step is not None and step not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; available: {steps}"
            )
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        candidates = [step] if step is not None else steps[::-1]
        if not fallback:
            candidates = candidates[:1]
        skipped: list[str] = []
        for k, s in enumerate(candidates):
            try:
                restored = self._restore_step(state, rng, s)
            except CheckpointError as e:
                if k + 1 == len(candidates):
                    raise
                line = f"{e}; falling back to step {candidates[k + 1]}"
                skipped.append(line)
                if log is not None:
                    log(line)
                continue
            return dataclasses.replace(restored, skipped=tuple(skipped))
        raise AssertionError("unreachable")

    def _restore_step(self, state: Any, rng: jax.Array | None, step: int) -> Restored:
        template = {"train": state, "rng": None if rng is None else _key_data(rng)}
        where = f"checkpoint step {step} at {self.step_path(step)}"
        problem = None
        with _quiet_asyncio():
            try:
                out = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(_abstract(template)),
                        data=ocp.args.JsonRestore(),
                    ),
                )
                item = out["state"]
                data = out["data"]
                jax.block_until_ready(item)
            except Exception as e:  # Orbax and TensorStore raise many types for a bad file.
                problem = _what_is_unreadable(e)
        if problem is not None:
            raise CheckpointError(f"{where} is damaged: {problem}")
        saved = data.get("checksums")
        if saved is not None:
            now = _checksums(item)
            bad = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
            if bad:
                names = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
                raise CheckpointError(
                    f"{where} is damaged: {len(bad)} array(s) differ from their saved "
                    f"checksums ({names})"
                )
        restored_rng = None if item["rng"] is None else jnp.asarray(np.asarray(item["rng"]))
        if rng is not None and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
            restored_rng = jax.random.wrap_key_data(restored_rng, impl=jax.random.key_impl(rng))
        return Restored(
            step=step, state=item["train"], rng=restored_rng, data_state=data.get("data_state")
        )

    def close(self) -> None:
        """Waits for pending writes and releases Orbax's resources."""
        self._manager.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
