"""jaxvision: pure, jit-compiled computer-vision building blocks in JAX.

Public namespaces are imported on first use::

    import jaxvision
    jaxvision.boxes.box_iou(a, b)

or directly: ``from jaxvision import boxes``. Nothing under ``jaxvision._src`` is public.
"""

from __future__ import annotations

import importlib

from jaxvision._src.export import NAMESPACES as _NAMESPACES

__version__ = "0.1.0"
__all__ = sorted(_NAMESPACES)


def __getattr__(name: str) -> object:
    if name in _NAMESPACES:
        return importlib.import_module(f"jaxvision.{name}")
    raise AttributeError(f"module 'jaxvision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMESPACES])
