"""Building a Flax NNX module's parameters in one cheaply compiled program."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
from flax import nnx

from jaxvision._src.export import export

M = TypeVar("M", bound=nnx.Module)

# XLA options for a program that runs once: LLVM's cheapest pipeline. The initialisers'
# random draws compile in about half the CPU time and give the same values.
_RUN_ONCE_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


@export("train.init_module")
def init_module(factory: Callable[[], M]) -> M:
    """Calls ``factory()`` (which builds an NNX module) as one jitted program.

    Built eagerly, a module's initialisers compile one small program per parameter shape
    and initialiser (for the main job's DETR: 14 programs, about 10 CPU-seconds on a
    2-core CPU); here the whole construction is traced once, compiled with LLVM's cheapest
    pipeline (it runs once, so its speed does not matter), and run. The parameters and
    state are those ``factory()`` gives eagerly (the same random draws; equal to float32
    rounding, see ``tests/train/test_init_module.py``).

    Args:
      factory: a function of no arguments returning an ``nnx.Module``; it must be
        traceable (no host callbacks, no data-dependent Python control flow), as any
        module constructor is.

    Returns:
      The module, its arrays on the default device.

    Raises:
      TypeError: ``factory`` is not callable or does not return an ``nnx.Module``.

    Examples:
      >>> from flax import nnx
      >>> from jaxvision import train
      >>> layer = train.init_module(lambda: nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> layer.kernel.shape
      (3, 2)
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    abstract = nnx.eval_shape(factory)
    if not isinstance(abstract, nnx.Module):
        raise TypeError(f"factory must return an nnx.Module, got {type(abstract).__name__}")
    graphdef, _ = nnx.split(abstract)
    build = jax.jit(lambda: nnx.split(factory())[1])
    state = build.lower().compile(compiler_options=_RUN_ONCE_OPTIONS)()
    return nnx.merge(graphdef, state)
