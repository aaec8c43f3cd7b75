"""``nn.RealNVP``: the RLE flow as an NNX module over :func:`ops.realnvp_log_prob`."""

from __future__ import annotations

from flax import nnx
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export
from jaxvision._src.ops.realnvp import MLPParams, RealNVPParams, realnvp_init, realnvp_log_prob


@export("nn.RealNVP")
class RealNVP(nnx.Module):
    """RealNVP density on 2-D points (RLE's ``G_phi``); calling it returns ``log p(x)``.

    Args:
      couplings: number of affine couplings (RLE: 6).
      hidden: width of the scale and shift nets (RLE: 64).
      gain: Xavier gain of the initial weights (RLE: 0.01, near the identity flow).
      rngs: parameter initialisation.

    Examples:
      >>> from flax import nnx
      >>> import numpy as np
      >>> flow = RealNVP(rngs=nnx.Rngs(0))
      >>> flow(np.zeros((3, 2))).shape
      (3,)
    """

    def __init__(
        self, *, couplings: int = 6, hidden: int = 64, gain: float = 0.01, rngs: nnx.Rngs
    ) -> None:
        p = realnvp_init(rngs.params(), couplings=couplings, hidden=hidden, gain=gain)
        self.scale = nnx.List([nnx.Param(a) for a in p.scale])
        self.shift = nnx.List([nnx.Param(a) for a in p.shift])

    @property
    def params(self) -> RealNVPParams:
        """The functional twin's parameters."""
        return RealNVPParams(
            MLPParams(*(v[...] for v in self.scale)), MLPParams(*(v[...] for v in self.shift))
        )

    def __call__(self, x: ArrayLike) -> Array:
        """``x: [..., 2]`` -> ``[...]`` log-density (:func:`ops.realnvp_log_prob`)."""
        return realnvp_log_prob(self.params, x)
