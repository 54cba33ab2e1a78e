"""SNAKE activation (Liu et al., 2022) with a learnable per-channel alpha."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class Snake(eqx.Module):
    """`x + sin²(αx)/α`, one α per feature, initialised to 1."""

    alpha: Float[Array, " features"]
    eps: float = eqx.field(static=True, default=1e-6)

    def __init__(self, features: int, *, eps: float = 1e-6):
        self.alpha = jnp.ones(features)
        self.eps = eps

    def __call__(self, x: Float[Array, "*batch features"]) -> Float[Array, "*batch features"]:
        alpha = self.alpha.astype(x.dtype)
        return x + jnp.sin(alpha * x) ** 2 / (alpha + self.eps)
