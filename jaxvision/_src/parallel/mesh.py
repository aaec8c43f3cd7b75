"""Device meshes and placing host data onto them, in one or many processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision._src.export import export


@export("parallel.make_mesh")
def make_mesh(
    num_devices: int | None = None,
    *,
    axis_name: str = "data",
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A one-axis data-parallel mesh over the devices of every process.

    Devices are ordered by (process index, device id), so each process owns a contiguous
    block of the axis and its local batch is a contiguous block of the global batch.

    Args:
      num_devices: how many devices to use (the first ones in that order); ``None``: all.
      axis_name: the mesh axis name the step builder and collectives reduce over.
      devices: an explicit device list instead of ``jax.devices()``.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(num_devices,)`` with one explicit axis.
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"axis_name must be a non-empty string, got {axis_name!r}")
    pool = sorted(devices or jax.devices(), key=lambda d: (d.process_index, d.id))
    n = len(pool) if num_devices is None else num_devices
    if not isinstance(n, int) or not 1 <= n <= len(pool):
        raise ValueError(f"num_devices must be an int in [1, {len(pool)}], got {num_devices!r}")
    return jax.make_mesh(
        (n,), (axis_name,), axis_types=(jax.sharding.AxisType.Explicit,), devices=pool[:n]
    )


def _axis(mesh: Mesh, axis_name: str) -> int:
    if axis_name not in mesh.shape:
        raise ValueError(f"axis_name {axis_name!r} is not an axis of the mesh {dict(mesh.shape)}")
    return mesh.shape[axis_name]


@export("parallel.shard_batch")
def shard_batch(batch: Any, mesh: Mesh, *, axis_name: str = "data") -> Any:
    """Places this process's part of a global batch onto the mesh, split on axis 0.

    In a single process ``batch`` is the whole global batch. With several processes each
    passes its own contiguous block of rows (see :func:`process_batch_slice`); the result
    is one global ``jax.Array`` per leaf whose leading axis is sharded over ``axis_name``.

    Args:
      batch: a pytree of host or device arrays, each ``[B_local, ...]``.
      mesh: the mesh from :func:`make_mesh`.
      axis_name: the mesh axis the batch is split over.

    Returns:
      The same pytree of global arrays ``[B_global, ...]`` with sharding
      ``NamedSharding(mesh, P(axis_name))``.
    """
    n = _axis(mesh, axis_name)
    sharding = NamedSharding(mesh, P(axis_name))
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x: Any) -> jax.Array:
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            raise ValueError("shard_batch: every leaf of batch needs a leading batch axis")
        if jax.process_count() == 1:
            if x.shape[0] % n:
                raise ValueError(
                    f"shard_batch: batch size {x.shape[0]} is not divisible by the "
                    f"{n} devices of mesh axis {axis_name!r}"
                )
            return jax.device_put(x, sharding)
        if x.shape[0] % local_devices:
            raise ValueError(
                f"shard_batch: local batch size {x.shape[0]} is not divisible by the "
                f"{local_devices} local devices of mesh axis {axis_name!r}"
            )
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, batch)


@export("parallel.process_batch_slice")
def process_batch_slice(global_batch_size: int, mesh: Mesh, *, axis_name: str = "data") -> slice:
    """The rows of a global batch that this process feeds to :func:`shard_batch`.

    Args:
      global_batch_size: rows in the global batch, divisible by the mesh axis size.
      mesh: the mesh from :func:`make_mesh`.
      axis_name: the mesh axis the batch is split over.

    Returns:
      ``slice(start, stop)`` of this process's contiguous block of rows.
    """
    n = _axis(mesh, axis_name)
    if global_batch_size % n:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the {n} devices "
            f"of mesh axis {axis_name!r}"
        )
    per_device = global_batch_size // n
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if not mine:
        raise ValueError("this process owns no device of the mesh")
    return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


@export("parallel.replicate")
def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies a pytree (params, optimizer state, ...) onto every device of the mesh.

    Every process must pass the same values (e.g. built from the same seed). The result
    never shares buffers with ``tree``, so a step that donates it leaves ``tree`` intact.

    Args:
      tree: a pytree of arrays.
      mesh: the mesh from :func:`make_mesh`.

    Returns:
      The pytree of global arrays with sharding ``NamedSharding(mesh, P())``.
    """
    sharding = NamedSharding(mesh, P())

    def put(x: Any) -> Any:
        if jax.process_count() == 1 or not isinstance(x, jax.Array):
            # A copy even where x is already placed so: the step donates its input state,
            # which would otherwise delete the caller's own arrays.
            return jax.device_put(x, sharding, may_alias=False)
        return jax.device_put(np.asarray(x), sharding)

    return jax.tree.map(put, tree)
