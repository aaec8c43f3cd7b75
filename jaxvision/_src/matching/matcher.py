"""The type of a batched matcher, as ``models.detr_loss`` takes it."""

from __future__ import annotations

from typing import Protocol

import jax
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("matching.Matcher")
class Matcher(Protocol):
    """A batched matcher: ``(costs [B, Q, T], target_mask [B, T]) -> (query_of_target [B, T],
    target_of_query [B, Q])``, int32 indices with -1 where unmatched.

    ``hungarian_match`` (exact) and ``greedy_match`` (a baseline) are matchers; so is any
    function with their signature, e.g. ``functools.partial(hungarian_match, method="xla")``.
    """

    def __call__(
        self, costs: ArrayLike, target_mask: ArrayLike, /
    ) -> tuple[jax.Array, jax.Array]: ...
