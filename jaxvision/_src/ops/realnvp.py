"""RealNVP normalising flow on 2-D points: the density G_phi of residual log-likelihood.

RLE (Li et al., ICCV 2021) learns the distribution of normalised residuals with a RealNVP
flow (Dinh et al., ICLR 2017): 6 affine couplings with alternating masks ``[0, 1]`` and
``[1, 0]``, each with a scale net and a shift net ``2 -> 64 -> 64 -> 2`` (LeakyReLU), the
scale squashed by ``tanh`` so that ``exp(-s)`` stays in ``[1/e, e]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from jaxvision._src.export import export


@export("ops.MLPParams")
class MLPParams(NamedTuple):
    """Weights of ``couplings`` stacked 3-layer nets: ``w1 [C, 2, D]``, ``b1 [C, D]``,
    ``w2 [C, D, D]``, ``b2 [C, D]``, ``w3 [C, D, 2]``, ``b3 [C, 2]``."""

    w1: Array
    b1: Array
    w2: Array
    b2: Array
    w3: Array
    b3: Array


@export("ops.RealNVPParams")
class RealNVPParams(NamedTuple):
    """Parameters of :func:`realnvp_log_prob`: the scale nets and the shift nets."""

    scale: MLPParams
    shift: MLPParams


def _xavier(key: Array, shape: tuple[int, ...], gain: float) -> Array:
    fan_in, fan_out = shape[-2], shape[-1]
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


@export("ops.realnvp_init")
def realnvp_init(
    key: Array, *, couplings: int = 6, hidden: int = 64, gain: float = 0.01
) -> RealNVPParams:
    """Initial flow parameters: Xavier-uniform weights with ``gain`` (RLE's 0.01, so the
    flow starts close to the identity and ``G_phi`` close to a standard normal), zero biases.

    Examples:
      >>> import jax
      >>> p = realnvp_init(jax.random.key(0))
      >>> p.scale.w2.shape
      (6, 64, 64)
    """
    if couplings < 1 or hidden < 1:
        raise ValueError(f"`couplings` and `hidden` must be >= 1, got {couplings}, {hidden}")
    shapes = ((2, hidden), (hidden, hidden), (hidden, 2))

    def mlp(k: Array) -> MLPParams:
        ks = jax.random.split(k, 3)
        ws = [_xavier(kk, (couplings, *s), gain) for kk, s in zip(ks, shapes, strict=True)]
        bs = [jnp.zeros((couplings, s[1]), jnp.float32) for s in shapes]
        return MLPParams(ws[0], bs[0], ws[1], bs[1], ws[2], bs[2])

    ks, kt = jax.random.split(key)
    return RealNVPParams(mlp(ks), mlp(kt))


def _masks(couplings: int) -> list[Array]:
    return [
        jnp.array([0.0, 1.0]) if i % 2 == 0 else jnp.array([1.0, 0.0]) for i in range(couplings)
    ]


def _mlp(p: MLPParams, i: int, x: Array) -> Array:
    h = jax.nn.leaky_relu(x @ p.w1[i] + p.b1[i], 0.01)
    h = jax.nn.leaky_relu(h @ p.w2[i] + p.b2[i], 0.01)
    return h @ p.w3[i] + p.b3[i]


def _check_points(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"`x` must be [..., 2], got shape {x.shape}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


@export("ops.realnvp_inverse")
def realnvp_inverse(params: RealNVPParams, x: ArrayLike) -> tuple[Array, Array]:
    """Maps data ``x`` to the latent ``z`` and returns ``log |det dz/dx|``.

    Couplings run last to first; coupling ``i`` with mask ``m`` keeps ``m z`` and sets
    ``z <- m z + (1 - m) (z - t(m z)) exp(-s(m z))``, ``s = tanh(net_s)``; its log-det is
    ``-sum (1 - m) s``. Finite for every finite ``x`` whose image stays below ~1e19.

    Args:
      params: :class:`RealNVPParams`.
      x: ``[..., 2]`` points.

    Returns:
      ``(z [..., 2], log_det [...])``.
    """
    x = _check_points(x)
    couplings = params.scale.w1.shape[0]
    z = x
    log_det = jnp.zeros(x.shape[:-1], x.dtype)
    for i, m in reversed(list(enumerate(_masks(couplings)))):
        m = m.astype(x.dtype)
        kept = m * z
        s = jnp.tanh(_mlp(params.scale, i, kept)) * (1 - m)
        t = _mlp(params.shift, i, kept) * (1 - m)
        z = kept + (1 - m) * (z - t) * jnp.exp(-s)
        log_det = log_det - jnp.sum(s, axis=-1)
    return z, log_det


@export("ops.realnvp_log_prob")
def realnvp_log_prob(params: RealNVPParams, x: ArrayLike) -> Array:
    """Log-density of the flow, ``log N(z(x); 0, I) + log |det dz/dx|``.

    Args:
      params: :class:`RealNVPParams` (:func:`realnvp_init`).
      x: ``[..., 2]`` points (RLE: residuals normalised by sigma).

    Returns:
      ``[...]`` log-densities.

    References:
      Dinh et al., "Density estimation using Real NVP", ICLR 2017; Li et al., "Human Pose
      Regression with Residual Log-likelihood Estimation", ICCV 2021.

    Examples:
      >>> import jax, numpy as np
      >>> p = realnvp_init(jax.random.key(0), gain=0.0)  # the identity flow
      >>> round(float(realnvp_log_prob(p, np.zeros(2))), 6)  # -log(2 pi)
      -1.837877
    """
    z, log_det = realnvp_inverse(params, x)
    return -0.5 * jnp.sum(z**2, axis=-1) - math.log(2 * math.pi) + log_det
