"""Output types of Pallas kernels that vary over the same ``shard_map`` axes as an input.

Inside ``jax.shard_map`` (with its default ``check_vma=True``) every value records the mesh
axes over which it varies, and a ``pallas_call`` must declare that for its outputs. The
attribute is ``manual_axis_type`` in jax 0.10 and ``vma`` in other versions; this helper
reads and passes whichever exists.
"""

from __future__ import annotations

import jax
import numpy as np


def output_like(x: jax.Array, shape: tuple[int, ...], dtype: np.dtype) -> jax.ShapeDtypeStruct:
    """A ``shape``/``dtype`` output type that varies over the same axes as ``x``."""
    aval = jax.typeof(x)
    for name in ("manual_axis_type", "vma"):
        if hasattr(aval, name):
            try:
                return jax.ShapeDtypeStruct(shape, dtype, **{name: getattr(aval, name)})
            except TypeError:
                continue
    return jax.ShapeDtypeStruct(shape, dtype)
