"""Normalisation layers over channel-last sequences: LayerNorm over channels, GroupNorm(1) over a whole sequence."""


import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.remat import recomputed


class LayerNorm(eqx.Module):
    """Same parameters and numerics as `eqx.nn.LayerNorm(dim)`, applied to `(..., dim)`."""

    weight: Float[Array, " dim"]
    bias: Float[Array, " dim"]
    eps: float = eqx.field(static=True, default=1e-5)

    def __init__(self, dim: int, *, eps: float = 1e-5):
        self.weight = jnp.ones(dim)
        self.bias = jnp.zeros(dim)
        self.eps = eps

    def __call__(self, x: Float[Array, "*batch dim"]) -> Float[Array, "*batch dim"]:
        return _normalise(x, self.weight, self.bias, self.eps, (-1,))


@recomputed(static_argnums=(3, 4))  # the backward recomputes the statistics: only `x` is kept
def _normalise(x: Array, weight: Array, bias: Array, eps: float, axes: tuple[int, ...]) -> Array:
    """(x − mean) / √(var + eps) over `axes`, in float32, then a per-channel affine; returned in x's dtype."""
    stats = x.astype(jnp.float32)
    mean = jnp.mean(stats, axis=axes, keepdims=True)
    var = jnp.var(stats, axis=axes, keepdims=True)
    normed = (stats - mean) * jax.lax.rsqrt(var + eps)
    return (normed * weight.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


class GroupNorm1(eqx.Module):
    """GroupNorm with one group on channel-last sequences: statistics over (time, channels) of each sequence.

    Same parameters and numerics as `eqx.nn.GroupNorm(1, channels)` applied to the transposed `(channels, time)`.
    """

    weight: Float[Array, " channels"]
    bias: Float[Array, " channels"]
    eps: float = eqx.field(static=True, default=1e-5)

    def __init__(self, channels: int, *, eps: float = 1e-5):
        self.weight = jnp.ones(channels)
        self.bias = jnp.zeros(channels)
        self.eps = eps

    def __call__(self, x: Float[Array, "*batch time channels"]) -> Float[Array, "*batch time channels"]:
        return _normalise(x, self.weight, self.bias, self.eps, (-2, -1))
