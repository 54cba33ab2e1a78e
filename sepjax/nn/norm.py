"""LayerNorm over the last axis of a whole sequence (one call instead of a vmap over frames)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


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
        stats = x.astype(jnp.float32)
        mean = jnp.mean(stats, axis=-1, keepdims=True)
        var = jnp.var(stats, axis=-1, keepdims=True)
        normed = (stats - mean) * jax.lax.rsqrt(var + self.eps)
        weight, bias = self.weight.astype(jnp.float32), self.bias.astype(jnp.float32)
        return (normed * weight + bias).astype(x.dtype)
