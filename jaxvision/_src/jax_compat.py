"""Every difference between the JAX versions jaxvision runs on, in one place.

Inside ``jax.shard_map`` (with its default ``check_vma=True``) every value records the mesh
axes over which it varies. The abstract value exposes them as ``aval.mat.varying`` and its
constructor argument is ``manual_axis_type`` in jax 0.10; other versions call both
``vma``. Private code asks here instead of reading either attribute itself.
"""

from __future__ import annotations

import jax
import numpy as np


def varying_axes(x: jax.Array) -> frozenset:
    """The ``shard_map`` mesh axes along which ``x`` differs between devices (its vma)."""
    aval = jax.typeof(x)
    mat = getattr(aval, "mat", None)
    return frozenset(mat.varying if mat is not None else getattr(aval, "vma", ()))


def output_like(x: jax.Array, shape: tuple[int, ...], dtype: np.dtype) -> jax.ShapeDtypeStruct:
    """A ``shape``/``dtype`` Pallas output type that varies over the same axes as ``x``."""
    aval = jax.typeof(x)
    for name in ("manual_axis_type", "vma"):
        if hasattr(aval, name):
            try:
                return jax.ShapeDtypeStruct(shape, dtype, **{name: getattr(aval, name)})
            except TypeError:
                continue
    return jax.ShapeDtypeStruct(shape, dtype)
