"""The API registry: jaxvision's analogue of TensorFlow's ``tf_export``.

A public function or class is tagged with its public dotted names::

    @export("boxes.box_iou")
    def box_iou(boxes1, boxes2): ...

    @export("boxes.generalized_box_iou", deprecated=("boxes.giou",))
    def generalized_box_iou(boxes1, boxes2): ...

The decorator returns the object unchanged and records it in a registry. The public
namespaces (``jaxvision/boxes.py``, ...) and the golden API listing
(``tests/api_golden/*.txt``) are generated from that registry by
``python -m jaxvision.api --write``; tests fail when either is stale. Two different objects
claiming one public name is an error at import time, as in TensorFlow's ``api_export``.
Deprecated aliases resolve to the same object and emit a ``DeprecationWarning`` on access.

When a rename also changes the signature (an argument order, positional options made
keyword-only), the old name keeps the old signature in a small wrapper registered with
``export_deprecated``::

    @export_deprecated("metrics.confusion_matrix", replacement="metrics.confusion_from_labels")
    def confusion_matrix(target, pred, num_classes): ...
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

# Public namespaces and the one-line description that heads each generated module.
NAMESPACES: dict[str, str] = {
    "boxes": "Box formats, areas, the pairwise IoU family and jit-compatible NMS.",
    "keypoints": "Keypoint heatmaps, soft-argmax and SimCC codecs, flips and crop transforms.",
    "geometry": "Image-space transforms: affine warps and similarity estimation.",
    "face": "Face alignment templates and the detect-align-embed pipeline pieces.",
    "losses": "Training losses: IoU-family box losses, keypoint losses, margin softmax.",
    "metrics": "Segmentation, keypoint, verification and COCO metrics.",
    "matching": "Exact and greedy bipartite matching for set prediction, inside jit.",
    "ops": "Array operations without parameters: the functional twins of the nn modules.",
    "nn": "Flax NNX modules, each a thin wrapper over its twin in ops, and their variables.",
    "models": "Complete models (DETR, pose, face) with presets and weight import.",
    "parallel": "Data parallelism on shard_map, collectives, launch and checkpoints.",
    "data": "Datasets, COCO-format I/O and input pipelines.",
    "train": "The training harness: configs, timers, metrics writer, guards, evaluation loop.",
}


class ExportError(ValueError):
    """A public name is malformed, unknown, or claimed by two different objects."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One public name of a registered object.

    Attributes:
      name: dotted public name below ``jaxvision``, e.g. ``"boxes.box_iou"``.
      module: the private module that defines the object.
      attr: the object's attribute name in ``module``.
      obj: the object itself.
      replacement: for a deprecated alias, the public name to use instead; else ``None``.
    """

    name: str
    module: str
    attr: str
    obj: object
    replacement: str | None = None

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def symbol(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def deprecated(self) -> bool:
        return self.replacement is not None


def _check_name(name: str) -> None:
    parts = name.split(".")
    if len(parts) != 2 or not all(p.isidentifier() and not keyword.iskeyword(p) for p in parts):
        raise ExportError(f"public name {name!r} must look like 'namespace.symbol'")
    if parts[0] not in NAMESPACES:
        raise ExportError(
            f"public name {name!r} is in unknown namespace {parts[0]!r}; "
            f"known: {sorted(NAMESPACES)}"
        )
    if parts[1].startswith("_"):
        raise ExportError(f"public name {name!r} must not start with an underscore")


class Registry:
    """Maps public names to objects; refuses two objects claiming one name."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}

    def add(self, endpoint: Endpoint) -> None:
        _check_name(endpoint.name)
        old = self._endpoints.get(endpoint.name)
        if old is not None and (old.module, old.attr) != (endpoint.module, endpoint.attr):
            raise ExportError(
                f"public name 'jaxvision.{endpoint.name}' is claimed by both "
                f"{old.module}.{old.attr} and {endpoint.module}.{endpoint.attr}"
            )
        # Re-registering the same definition (a module reload) replaces it.
        self._endpoints[endpoint.name] = endpoint

    def endpoints(self, namespace: str | None = None) -> list[Endpoint]:
        """All endpoints (optionally of one namespace), sorted by public name."""
        return sorted(
            (e for e in self._endpoints.values() if namespace in (None, e.namespace)),
            key=lambda e: e.name,
        )

    def export(self, *names: str, deprecated: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator giving an object its public names; see the module docstring."""
        deprecated = tuple(deprecated)
        if not names:
            raise ExportError("export() needs at least one public name")

        def decorator(obj: T) -> T:
            module = getattr(obj, "__module__", None)
            attr = getattr(obj, "__name__", None)
            if not module or not attr:
                raise ExportError(f"cannot export {obj!r}: it has no __module__/__name__")
            for name in names:
                self.add(Endpoint(name, module, attr, obj))
            for name in deprecated:
                self.add(Endpoint(name, module, attr, obj, replacement=names[0]))
            return obj

        return decorator

    def export_deprecated(self, name: str, *, replacement: str) -> Callable[[T], T]:
        """Decorator registering a wrapper that keeps an old name's old signature."""

        def decorator(obj: T) -> T:
            module = getattr(obj, "__module__", None)
            attr = getattr(obj, "__name__", None)
            if not module or not attr:
                raise ExportError(f"cannot export {obj!r}: it has no __module__/__name__")
            _check_name(replacement)
            self.add(Endpoint(name, module, attr, obj, replacement=replacement))
            return obj

        return decorator


REGISTRY = Registry()


def export(*names: str, deprecated: Iterable[str] = ()) -> Callable[[T], T]:
    """Registers an object under one or more public names (``"boxes.box_iou"``).

    Args:
      *names: public dotted names ``"namespace.symbol"``; the first is canonical.
      deprecated: old names kept working with a ``DeprecationWarning`` pointing at the
        canonical name.

    Returns:
      A decorator that records the object and returns it unchanged.
    """
    return REGISTRY.export(*names, deprecated=deprecated)


def export_deprecated(name: str, *, replacement: str) -> Callable[[T], T]:
    """Registers a wrapper that keeps a renamed function's old signature under its old name.

    Use it when the new name also changes the arguments (their order, or options made
    keyword-only), so that an old call keeps its old meaning: the wrapper translates the
    call and the namespace emits a ``DeprecationWarning`` naming ``replacement``.

    Args:
      name: the old public dotted name.
      replacement: the public name to use instead.

    Returns:
      A decorator that records the wrapper and returns it unchanged.
    """
    return REGISTRY.export_deprecated(name, replacement=replacement)
