"""A deterministic, resumable input pipeline on grain, producing batches sharded on a mesh.

The record stream is defined by global position: position ``t`` of epoch ``e = t // N``
is record ``perm_e[t % N]`` of the source (``perm_e`` a permutation drawn from
``(seed, e)``), augmented with a NumPy generator seeded by ``(seed, t)``. Global batch
``b`` holds positions ``b * G .. (b + 1) * G - 1``; each process decodes only the rows of
it that its devices hold. So the batches depend only on the seed, never on the number of
processes, devices or workers, and a resumed run reads exactly the batches it would have
read: the position is one integer (batches consumed).

Decoding and augmentation run in grain worker processes (``worker_count``), each computing
whole batches, which sidesteps the GIL; ``thread_count`` instead uses grain's thread pool
in this process (fast only where NumPy releases the GIL).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grain
import jax
import numpy as np
from jax.sharding import Mesh

from jaxvision._src.export import export
from jaxvision._src.parallel.mesh import process_batch_slice, shard_batch

Transform = Callable[[Any, np.random.Generator], Any]


class RandomAccessSource(Protocol):
    def __len__(self) -> int: ...
    def __getitem__(self, index: int) -> Any: ...


class _Record:
    """Global position -> augmented record; picklable, so it runs in worker processes."""

    def __init__(
        self,
        source: RandomAccessSource,
        transform: Transform | None,
        seed: int,
        shuffle: bool,
        global_batch_size: int,
        rows: slice,
    ) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.shuffle = shuffle
        self.global_batch_size = global_batch_size
        self.rows = rows
        self._epoch: int | None = None
        self._perm: np.ndarray | None = None

    def position(self, j: int) -> int:
        """Global stream position of this process's ``j``-th record."""
        local = self.rows.stop - self.rows.start
        return (j // local) * self.global_batch_size + self.rows.start + j % local

    def __call__(self, j: int) -> Any:
        t = self.position(j)
        n = len(self.source)
        epoch, k = divmod(t, n)
        if self.shuffle:
            if epoch != self._epoch:
                self._perm = np.random.default_rng((self.seed, epoch)).permutation(n)
                self._epoch = epoch
            k = int(self._perm[k])
        record = self.source[k]
        if self.transform is None:
            return record
        return self.transform(record, np.random.default_rng((self.seed, 1, t)))


def _stack(records: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.stack(xs), *records)


def _allow_grain_workers() -> None:
    # grain reads absl flags in its workers; outside absl.app.run they are unparsed.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


@export("data.Loader")
class Loader:
    """Iterates over global batches of a random-access source, sharded onto a mesh.

    Each ``next(loader)`` returns a pytree of arrays ``[G, ...]`` (``G`` the global batch
    size): with a ``mesh``, global ``jax.Array`` sharded over ``axis_name`` (this process
    decodes only its rows, see :func:`jaxvision.parallel.process_batch_slice`); without
    one, the NumPy batch. The last incomplete global batch of the stream is dropped.

    Example::

      loader = data.Loader(source, global_batch_size=64, transform=augment, seed=0,
                           mesh=mesh, worker_count=2)
      for batch in loader:
          state, metrics = step(state, batch, rng)
      saved = loader.get_state()   # {"batches": ..., ...}; give it to CheckpointManager
      loader.set_state(saved)      # continue from exactly there

    Args:
      source: random access (``len(source)``, ``source[i]``); records are pytrees of
        arrays of equal shapes. Must be picklable when ``worker_count > 0``.
      global_batch_size: rows per global batch, divisible by the mesh axis size.
      transform: ``transform(record, rng: np.random.Generator) -> record``, the decoding and
        augmentation; a module-level function when ``worker_count > 0``.
      seed: fixes the order of every epoch and every random augmentation.
      shuffle: draw a new permutation of the source each epoch; else source order.
      num_epochs: epochs in the stream; ``None`` for an endless stream. A stream shorter
        than one global batch raises ``ValueError``.
      mesh: put batches onto this mesh; ``None`` yields NumPy batches in one process.
      axis_name: the mesh axis the batch is split over.
      worker_count: grain worker processes computing batches; 0 computes them here.
      thread_count: grain reader threads in this process (used when ``worker_count == 0``).
      prefetch: batches each worker computes ahead.
    """

    def __init__(
        self,
        source: RandomAccessSource,
        *,
        global_batch_size: int,
        transform: Transform | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_epochs: int | None = None,
        mesh: Mesh | None = None,
        axis_name: str = "data",
        worker_count: int = 0,
        thread_count: int = 0,
        prefetch: int = 2,
    ) -> None:
        if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
            raise TypeError("source must support len(source) and source[i]")
        if len(source) == 0:
            raise ValueError("source is empty")
        if not isinstance(global_batch_size, int) or global_batch_size < 1:
            raise ValueError(f"global_batch_size must be a positive int, got {global_batch_size!r}")
        if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
            raise ValueError(f"num_epochs must be a positive int or None, got {num_epochs!r}")
        for name, value in (("worker_count", worker_count), ("thread_count", thread_count)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, got {prefetch!r}")
        if mesh is not None:
            rows = process_batch_slice(global_batch_size, mesh, axis_name=axis_name)
        elif jax.process_count() > 1:
            raise ValueError("mesh is required when several processes share the batches")
        else:
            rows = slice(0, global_batch_size)
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.mesh = mesh
        self.axis_name = axis_name
        self.worker_count = worker_count
        self.thread_count = thread_count
        self.prefetch = prefetch
        self.num_batches = (
            sys.maxsize // global_batch_size
            if num_epochs is None
            else num_epochs * len(source) // global_batch_size
        )
        if self.num_batches == 0:
            raise ValueError(
                f"the stream holds no batch: {num_epochs} epoch(s) of {len(source)} records "
                f"are fewer than global_batch_size={global_batch_size}"
            )
        local = rows.stop - rows.start
        self._batches = (
            grain.MapDataset.range(self.num_batches * local)
            .map(_Record(source, transform, seed, shuffle, global_batch_size, rows))
            .batch(local, drop_remainder=True, batch_fn=_stack)
        )
        self._position = 0
        self._iterator: Iterator[Any] | None = None

    def _start(self) -> Iterator[Any]:
        ds = self._batches[self._position :].to_iter_dataset(
            grain.ReadOptions(num_threads=self.thread_count, prefetch_buffer_size=self.prefetch)
        )
        if self.worker_count > 0:
            _allow_grain_workers()
            ds = ds.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self.worker_count, per_worker_buffer_size=self.prefetch
                )
            )
        return iter(ds)

    def __iter__(self) -> Loader:
        return self

    def __next__(self) -> Any:
        if self._position >= self.num_batches:
            self.close()
            raise StopIteration
        if self._iterator is None:
            self._iterator = self._start()
        batch = next(self._iterator)
        self._position += 1
        if self.mesh is not None:
            return shard_batch(batch, self.mesh, axis_name=self.axis_name)
        if self.worker_count > 0:
            # Own copies: the workers' shared-memory blocks are then freed at once.
            return jax.tree.map(np.array, batch)
        return batch

    def __len__(self) -> int:
        return self.num_batches

    def get_state(self) -> dict:
        """The position, JSON-compatible and the same on every process."""
        return {
            "batches": self._position,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
        }

    def set_state(self, state: dict) -> None:
        """Continues after ``state["batches"]`` global batches (from :meth:`get_state`).

        Raises ``ValueError`` for a state saved with another seed or global batch size.
        """
        if not isinstance(state, dict) or "batches" not in state:
            raise ValueError(f"state must be a dict from Loader.get_state(), got {state!r}")
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, loader has {self.seed}")
        saved = state.get("global_batch_size", self.global_batch_size)
        if saved != self.global_batch_size:
            raise ValueError(
                f"state was saved with global_batch_size {saved}, loader has "
                f"{self.global_batch_size}: its position counts batches of another size"
            )
        if not 0 <= state["batches"] <= self.num_batches:
            raise ValueError(f"state position {state['batches']} is outside the stream")
        self.close()
        self._position = int(state["batches"])

    def close(self) -> None:
        """Stops the worker processes and frees their buffers; iterating again restarts them."""
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
