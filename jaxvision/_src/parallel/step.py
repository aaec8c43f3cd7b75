"""The data-parallel train step: jax.shard_map over a mesh axis, gradients averaged by pmean.

Each device computes the loss and gradients of its shard of the global batch; gradients
are averaged with ``lax.pmean`` over the data axis (what PyTorch DDP's all-reduce does
after ``backward``), and every device applies the same optax update, so parameters stay
replicated. ``pmap_step`` builds the same step on ``jax.pmap`` for pmap-era code.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision._src.export import export
from jaxvision._src.jax_compat import varying_axes
from jaxvision._src.parallel.mesh import _axis
from jaxvision._src.parallel.state import TrainState


@export("parallel.LossFn")
class LossFn(Protocol):
    """The loss a data-parallel step differentiates.

    ``loss_fn(params, model_state, batch, rng, axis_name) -> (loss, (model_state, metrics))``:
    ``batch`` is this device's shard, ``rng`` this device's key, ``axis_name`` the data axis
    (for collectives such as DETR's box count); ``loss`` a scalar, ``metrics`` a dict of
    scalars averaged over devices.
    """

    def __call__(
        self, params: Any, model_state: Any, batch: Any, rng: jax.Array, axis_name: str, /
    ) -> tuple[jax.Array, tuple[Any, dict]]: ...


@export("parallel.StepFn")
class StepFn(Protocol):
    """A compiled train step: ``step(state, batch, rng) -> (state, metrics)``."""

    def __call__(
        self, state: TrainState, batch: Any, rng: jax.Array, /
    ) -> tuple[TrainState, dict]: ...


def _varying(x: jax.Array, axis_name: str) -> jax.Array:
    """Marks a replicated value as per-device, so its gradient is not summed implicitly."""
    if axis_name in varying_axes(x):
        return x
    return lax.pcast(x, axis_name, to="varying")


def _reduce(x: jax.Array, axis_name: str) -> jax.Array:
    """Makes a per-device value replicated: float mean, integer sum (counts)."""
    if axis_name not in varying_axes(x):
        return x
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return lax.pmean(x, axis_name)
    return lax.psum(x, axis_name)


def _tree_norm(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)

    def squares(x: jax.Array) -> jax.Array:
        sq = jnp.sum(jnp.square(x.astype(jnp.float32)))
        # A leaf sharded over a mesh axis (param_specs) holds a part of the whole on each
        # device: sum the parts.
        axes = tuple(sorted(varying_axes(sq)))
        return lax.psum(sq, axes) if axes else sq

    return jnp.sqrt(sum(squares(x) for x in leaves))


def _local_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    axis_name: str,
    state: TrainState,
    batch: Any,
    rng: jax.Array,
) -> tuple[TrainState, dict]:
    """One device's part of the step; runs inside shard_map or pmap over ``axis_name``."""
    rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    params = jax.tree.map(lambda p: _varying(p, axis_name), state.params)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(
        params, state.model_state, batch, rng, axis_name
    )
    if not isinstance(metrics, dict):
        raise TypeError(
            f"loss_fn must return (loss, (model_state, metrics: dict)), got {metrics!r}"
        )
    grads = jax.tree.map(lambda g: lax.pmean(g, axis_name), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    metrics = {
        **jax.tree.map(lambda m: _reduce(m, axis_name), metrics),
        "loss": lax.pmean(loss, axis_name),
        "grad_norm": _tree_norm(grads),
        "param_norm": _tree_norm(new_params),
    }
    new_state = TrainState(
        params=new_params,
        model_state=jax.tree.map(lambda s: _reduce(s, axis_name), model_state),
        opt_state=opt_state,
        step=state.step + 1,
    )
    return new_state, metrics


class _DonationChecked:
    """A compiled step that refuses a state whose buffers an earlier call donated.

    Calling XLA with deleted buffers is an error at best and a crash at worst (a segfault
    on several CPU devices); a re-run notebook cell does exactly that. Other attributes
    (``lower``, ``trace``, ...) are those of the compiled function.
    """

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def __call__(self, state: Any, batch: Any, rng: jax.Array) -> tuple[TrainState, dict]:
        # The common case in one cheap pass; the leaves' paths only to name a deleted one.
        if any(isinstance(x, jax.Array) and x.is_deleted() for x in jax.tree.leaves(state)):
            self._raise_deleted(state)
        return self._fn(state, batch, rng)

    @staticmethod
    def _raise_deleted(state: Any) -> None:
        for path, x in jax.tree_util.tree_leaves_with_path(state):
            if isinstance(x, jax.Array) and x.is_deleted():
                raise ValueError(
                    f"state leaf {jax.tree_util.keystr(path)} was deleted: this state was "
                    "donated to an earlier call of the step (donate=True), which reused its "
                    "buffers. Pass the state that call returned (state, metrics = step(state, "
                    "...)), or build the step with donate=False to keep inputs alive."
                )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


@export("parallel.donates_by_default")
def donates_by_default(devices: list[jax.Device]) -> bool:
    """Whether the train steps donate their input state when ``donate`` is not given.

    True where any of ``devices`` is an accelerator: donation saves the memory of a second
    copy of the parameters and optimizer state. False where all are CPUs: without it,
    XLA's CPU buffer assignment may place the step's temporaries inside the fresh output
    buffers instead of in one large scratch allocation that glibc maps and faults in afresh
    on every call. DETR-R50 at 2 x 256 x 256 (``experiments/bench/detr_step.py``):
    temporaries 342 MB -> 14 MB, page faults 94 K -> 16 K per step, the step 3-13% faster
    (BENCHMARKS.md, issue 19); the main job's small DETR (a 5.6 MB state, too small to hold its
    44-48 MB of temporaries) runs 1-2% slower without donation.

    Args:
      devices: the devices the step runs on.

    Examples:
      >>> donates_by_default(jax.devices("cpu"))
      False
    """
    return any(d.platform != "cpu" for d in devices)


def _check(loss_fn: Any, optimizer: Any, axis_name: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn)}")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer)}")
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"axis_name must be a non-empty string, got {axis_name!r}")


@export("parallel.data_parallel_step")
def data_parallel_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    axis_name: str = "data",
    donate: bool | None = None,
    param_specs: Any = None,
) -> StepFn:
    """Builds a jitted data-parallel train step on ``jax.shard_map``.

    ``loss_fn(params, model_state, batch, rng, axis_name) -> (loss, (model_state, metrics))``
    sees one device's shard of the batch (``[B_global / n, ...]``) and returns the mean loss
    over that shard. Gradients are averaged over the ``n`` devices, so with equal shards
    the step equals one step on the whole global batch, for any ``n``. A loss normalised
    by a global count (DETR divides by the number of boxes in the global batch) computes
    it inside ``loss_fn`` as ``lax.psum(count, axis_name) / n`` with
    ``n = lax.axis_size(axis_name)``: the per-device loss is then ``sum_local / mean
    count`` and its average over devices is ``sum_global / count_global``, the convention
    of DETR's PyTorch code under DDP.

    ``rng`` is folded with the device index, so each device draws different dropout masks;
    results then depend on the number of devices, unlike with deterministic models.
    Float metrics and model state are averaged over devices, integer ones summed.

    Args:
      loss_fn: pure function as above; ``metrics`` is a dict of scalars.
      optimizer: an optax ``GradientTransformation``.
      mesh: a mesh from :func:`make_mesh` with an axis ``axis_name``.
      axis_name: the data axis; passed to ``loss_fn`` for its own collectives.
      donate: donate the input state's buffers to the output state (XLA reuses them);
        the state passed in must not be used after the call: passing it again raises a
        ``ValueError`` that says it was donated. ``None`` (default): donate unless every
        device of ``mesh`` is a CPU (see :func:`donates_by_default`).
      param_specs: ``None`` (every parameter replicated), or a pytree of
        ``PartitionSpec`` with the structure of ``state.params`` for parameters split over
        other mesh axes (a Partial FC classifier's centres ``P("model", None)`` on a
        ``("data", "model")`` mesh); the optimizer state of a parameter takes its spec.
        ``loss_fn`` then sees each device's shard of such a parameter, and its gradient
        is averaged over ``axis_name`` only.

    Returns:
      ``step(state: TrainState, batch, rng) -> (state, metrics)``, jitted. ``batch``
      leaves are ``[B_global, ...]`` (placed with :func:`shard_batch`, or resharded);
      ``metrics`` holds ``loss``, ``grad_norm``, ``param_norm`` and ``loss_fn``'s metrics,
      replicated scalars.

    Example::

      mesh = parallel.make_mesh()
      opt = optax.adam(1e-3)
      state = parallel.replicate_on_mesh(parallel.TrainState.create(params, opt), mesh)

      def loss_fn(params, model_state, batch, rng, axis_name):
          err = batch["x"] @ params["w"] - batch["y"]
          return jnp.mean(err**2), (model_state, {})

      step = parallel.data_parallel_step(loss_fn, opt, mesh)
      state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(0))
    """
    _check(loss_fn, optimizer, axis_name)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh)}")
    donate = donates_by_default(list(mesh.devices.flat)) if donate is None else donate
    n = _axis(mesh, axis_name)
    replicated = NamedSharding(mesh, P())
    sharded = NamedSharding(mesh, P(axis_name))
    if param_specs is not None:
        for spec in jax.tree.leaves(param_specs):
            if not isinstance(spec, P):
                raise TypeError(f"param_specs leaves must be PartitionSpecs, got {spec!r}")
            for name in jax.tree.leaves(tuple(spec)):
                if name is not None:
                    _axis(mesh, name)

    def local(state: TrainState, batch: Any, rng: jax.Array) -> tuple[TrainState, dict]:
        return _local_step(loss_fn, optimizer, axis_name, state, batch, rng)

    def step(state: TrainState, batch: Any, rng: jax.Array) -> tuple[TrainState, dict]:
        if not isinstance(state, TrainState):
            raise TypeError(f"state must be a parallel.TrainState, got {type(state)}")
        specs = _state_specs(state, optimizer, param_specs, mesh)
        mapped = jax.shard_map(
            local, mesh=mesh, in_specs=(specs, P(axis_name), P()), out_specs=(specs, P())
        )
        for path, x in jax.tree_util.tree_leaves_with_path(batch):
            if x.ndim == 0 or x.shape[0] % n:
                raise ValueError(
                    f"batch leaf {jax.tree_util.keystr(path)} has shape {x.shape}: its "
                    f"leading axis must be divisible by the {n} devices of axis {axis_name!r}"
                )
        state = jax.tree.map(lambda x, p: jax.reshard(x, NamedSharding(mesh, p)), state, specs)
        batch = jax.tree.map(lambda x: jax.reshard(x, sharded), batch)
        return mapped(state, batch, jax.reshard(rng, replicated))

    return _DonationChecked(jax.jit(step, donate_argnums=(0,) if donate else ()))


def _state_specs(state: TrainState, optimizer: Any, param_specs: Any, mesh: Mesh) -> Any:
    """PartitionSpecs for every leaf of ``state``: replicated unless ``param_specs`` says."""
    if param_specs is None:
        return jax.tree.map(lambda _: P(), state)
    try:
        params = jax.tree.map(lambda _, s: s, state.params, param_specs)
    except ValueError as err:
        raise ValueError(f"param_specs must have the structure of state.params: {err}") from None
    opt = optax.tree_map_params(
        optimizer,
        lambda _, s: s,
        state.opt_state,
        params,
        transform_non_params=lambda _: P(),
        is_leaf=lambda x: isinstance(x, P),
    )
    return TrainState(
        params=params,
        model_state=jax.tree.map(lambda _: P(), state.model_state),
        opt_state=opt,
        step=P(),
    )


@export("parallel.pmap_step")
def pmap_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    axis_name: str = "data",
    donate: bool | None = None,
    devices: list[jax.Device] | None = None,
) -> StepFn:
    """The same step as :func:`data_parallel_step`, on ``jax.pmap`` for pmap-era code.

    Inputs and outputs carry a leading device axis, as in pmap-era notebooks:
    ``state`` from :func:`replicate_for_pmap`, ``batch`` leaves ``[n, B_global / n, ...]``;
    ``rng`` is one key shared by all devices. Results equal those of
    :func:`data_parallel_step` on a mesh of the same devices.

    Args:
      loss_fn: as for :func:`data_parallel_step`.
      optimizer: an optax ``GradientTransformation``.
      axis_name: the pmap axis name.
      donate: donate the input state's buffers (passing that state again raises
        ``ValueError``); ``None`` (default): as :func:`donates_by_default` says for
        ``devices``.
      devices: the devices to map over; ``None``: all local devices.

    Returns:
      ``step(state, batch, rng) -> (state, metrics)``, every output with a leading
      device axis.
    """
    _check(loss_fn, optimizer, axis_name)
    if donate is None:
        donate = donates_by_default(devices or jax.local_devices())

    def local(state: TrainState, batch: Any, rng: jax.Array) -> tuple[TrainState, dict]:
        return _local_step(loss_fn, optimizer, axis_name, state, batch, rng)

    mapped = jax.pmap(
        local,
        axis_name=axis_name,
        in_axes=(0, 0, None),
        devices=devices,
        donate_argnums=(0,) if donate else (),
    )
    return _DonationChecked(mapped)


@export("parallel.replicate_for_pmap")
def replicate_for_pmap(tree: Any, devices: list[jax.Device] | None = None) -> Any:
    """Stacks a pytree once per device (leading axis ``[n, ...]``) for :func:`pmap_step`.

    Args:
      tree: a pytree of arrays.
      devices: the devices; ``None``: all local devices.
    """
    n = len(devices or jax.local_devices())
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), tree)


@export("parallel.split_for_pmap")
def split_for_pmap(batch: Any, num_devices: int) -> Any:
    """Reshapes a global batch ``[B, ...]`` into ``[num_devices, B / num_devices, ...]``."""
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices must be a positive int, got {num_devices!r}")

    def split(x: Any) -> Any:
        if x.shape[0] % num_devices:
            raise ValueError(
                f"batch leaf of shape {x.shape} is not divisible into {num_devices} devices"
            )
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return jax.tree.map(split, batch)
