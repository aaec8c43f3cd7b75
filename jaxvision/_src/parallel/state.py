"""The training state pytree carried from one step to the next."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxvision._src.export import export


@export("parallel.TrainState")
@struct.dataclass
class TrainState:
    """Everything a data-parallel step updates, as one pytree.

    Attributes:
      params: the trainable parameters (e.g. the ``nnx.Param`` state of a model).
      model_state: the non-trainable state (BatchNorm statistics, ...); ``{}`` if none.
      opt_state: the optax optimizer state for ``params``.
      step: int32 scalar, the number of optimizer updates applied so far.
    """

    params: Any
    model_state: Any
    opt_state: Any
    step: jax.Array

    @classmethod
    def create(
        cls,
        params: Any,
        optimizer: optax.GradientTransformation,
        *,
        model_state: Any = None,
    ) -> TrainState:
        """A state at step 0 with ``optimizer.init(params)``.

        Args:
          params: pytree of trainable arrays.
          optimizer: the optax transformation the step builder will apply.
          model_state: pytree of non-trainable arrays; ``None`` means ``{}``.
        """
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(
                f"optimizer must be an optax.GradientTransformation, got {type(optimizer)}"
            )
        return cls(
            params=params,
            model_state={} if model_state is None else model_state,
            opt_state=optimizer.init(params),
            step=jnp.zeros((), jnp.int32),
        )
