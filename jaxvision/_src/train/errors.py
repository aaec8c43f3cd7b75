"""The errors a training run stops with: each names what to change, none needs a traceback."""

from __future__ import annotations

from jaxvision._src.export import export


@export("train.RunError")
class RunError(RuntimeError):
    """Base of the harness's errors; :func:`run_cli` prints them in one line and exits 1."""


@export("train.ConfigError")
class ConfigError(RunError, ValueError):
    """A ``--set`` override names no field, or its value does not parse as the field's type."""


@export("train.RunMismatchError")
class RunMismatchError(RunError):
    """A workdir holds another run: a different configuration, other classes, or ``--fresh``."""


@export("train.NonFiniteLossError")
class NonFiniteLossError(RunError, FloatingPointError):
    """A loss term is NaN or infinite; ``step`` and ``terms`` say where and which.

    Attributes:
      step: the step whose update produced the non-finite value (1-based, as checkpoints).
      terms: the non-finite scalars by name, e.g. ``{"loss": nan, "loss_bbox": nan}``.
    """

    def __init__(self, step: int, terms: dict[str, float]) -> None:
        self.step = step
        self.terms = dict(terms)
        named = ", ".join(f"{k}={v}" for k, v in self.terms.items())
        super().__init__(
            f"non-finite loss at step {step}: {named}; stopped before saving it, the last "
            "checkpoint holds finite weights"
        )
