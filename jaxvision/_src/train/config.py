"""Flat dataclass configurations: ``--set field=value`` overrides, JSON round trips, diffs.

A configuration is one flat ``@dataclasses.dataclass`` whose fields have simple types
(``int``, ``float``, ``bool``, ``str``, ``tuple[int, ...]``, ``dict[str, Any]``); presets
are functions returning one, kept in their own module with the command that runs them in
their docstring (big_vision's habit). Overrides from the command line are parsed against
the field's annotation, so ``--set steps=abc`` fails naming the field and its type::

    cfg = train.override(preset_shapes(), ["lr=5e-4", "buckets=32,64"])
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable
from typing import Any

from jaxvision._src.export import export
from jaxvision._src.train.errors import ConfigError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is None and hasattr(tp, "__name__"):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, text: bool) -> Any:
    """``value`` as type ``tp``; from the command line (``text``) or from JSON."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, text)
            except (TypeError, ValueError):
                continue
        raise ValueError
    if tp is type(None):
        if value is None or (text and value in ("none", "None", "null")):
            return None
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if tp is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError
        return value
    if origin is tuple:
        if text:
            value = (
                json.loads(value)
                if value.startswith("[")
                else [v for v in value.split(",") if v.strip()]
            )
        if not isinstance(value, list | tuple):
            raise ValueError
        item = args[0] if args else Any
        return tuple(
            _coerce(v.strip() if isinstance(v, str) and text else v, item, text) for v in value
        )
    if origin is dict or tp is dict:
        if text:
            value = json.loads(value)
        if not isinstance(value, dict):
            raise ValueError
        return _tuples(value)
    raise TypeError(f"unsupported field type {_type_name(tp)}")


def _tuples(x: Any) -> Any:
    """JSON lists back to tuples inside free-form dict fields (configs hold tuples)."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def _fields(cfg_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cfg_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg_type)}


@export("train.override")
def override(config: Any, items: Iterable[str]) -> Any:
    """A copy of ``config`` with ``field=value`` overrides, each checked against its field.

    Values are read by the field's annotation: ``int`` / ``float`` / ``str`` as written,
    ``bool`` from ``true`` / ``false`` / ``1`` / ``0``, a tuple from ``a,b,c`` or a JSON list,
    a dict from a JSON object.

    Args:
      config: a dataclass instance (a preset).
      items: ``"field=value"`` strings, e.g. from repeated ``--set`` options.

    Returns:
      A new instance of the same dataclass.

    Raises:
      ConfigError: an unknown field (with the closest names) or a value that does not
        parse as the field's type, naming the field and the expected type.

    Examples:
      >>> import dataclasses
      >>> @dataclasses.dataclass
      ... class Cfg:
      ...     steps: int = 10
      ...     lr: float = 1e-3
      >>> override(Cfg(), ["steps=20", "lr=5e-4"])
      Cfg(steps=20, lr=0.0005)
      >>> override(Cfg(), ["steps=abc"])
      Traceback (most recent call last):
      ...
      jaxvision._src.train.errors.ConfigError: --set steps=abc: field 'steps' expects int, got 'abc'
    """
    fields = _fields(type(config))
    changes = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set {item}: expected field=value")
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"--set {item}: {type(config).__name__} has no field {key!r}{hint}")
        try:
            changes[key] = _coerce(text, fields[key], text=True)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"--set {item}: field {key!r} expects {_type_name(fields[key])}, got {text!r}"
            ) from e
    return dataclasses.replace(config, **changes)


@export("train.config_to_dict")
def config_to_dict(config: Any) -> dict[str, Any]:
    """The configuration as a JSON-compatible dict (tuples become lists).

    Examples:
      >>> import dataclasses
      >>> @dataclasses.dataclass
      ... class Cfg:
      ...     sizes: tuple[int, ...] = (32, 64)
      >>> config_to_dict(Cfg())
      {'sizes': [32, 64]}
    """
    return json.loads(json.dumps(dataclasses.asdict(config)))


@export("train.config_from_dict")
def config_from_dict(config_type: type, values: dict[str, Any]) -> Any:
    """Rebuilds a configuration saved by :func:`config_to_dict`, checking every field.

    Raises:
      ConfigError: a saved field the dataclass no longer has, or a value of another type.

    Examples:
      >>> import dataclasses
      >>> @dataclasses.dataclass
      ... class Cfg:
      ...     sizes: tuple[int, ...] = (32, 64)
      >>> config_from_dict(Cfg, {"sizes": [16]})
      Cfg(sizes=(16,))
    """
    fields = _fields(config_type)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"saved configuration has fields {config_type.__name__} lacks: {unknown}")
    out = {}
    for key, value in values.items():
        try:
            out[key] = _coerce(value, fields[key], text=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"saved field {key!r} = {value!r} is not a {_type_name(fields[key])}"
            ) from e
    return config_type(**out)


@export("train.config_diff")
def config_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Field-by-field differences of two configurations (as :func:`config_to_dict` gives).

    Returns:
      One line per differing field, ``"lr: 0.001 (saved) -> 0.0005 (now)"``, sorted by
      field; empty when they agree.

    Examples:
      >>> config_diff({"lr": 0.001, "steps": 10}, {"lr": 0.0005, "steps": 10})
      ['lr: 0.001 (saved) -> 0.0005 (now)']
    """
    lines = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if a != b:
            lines.append(f"{key}: {json.dumps(a)} (saved) -> {json.dumps(b)} (now)")
    return lines
