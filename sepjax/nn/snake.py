"""SNAKE activation (Liu et al., 2022) with a learnable per-channel alpha."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.kernels import Kernels, sine


def snake_reference(x: Float[Array, "*batch features"], alpha: Float[Array, " features"], eps: float
                    ) -> Float[Array, "*batch features"]:
    """x + sin²(αx) / (α + eps), differentiated by autodiff."""
    return x + jnp.square(jnp.sin(alpha * x)) / (alpha + eps)


class Snake(eqx.Module):
    """`x + sin²(αx)/α`, one α per feature, initialised to 1; `kernels="cpu_fast"` uses `kernels.sine.snake`."""

    alpha: Float[Array, " features"]
    eps: float = eqx.field(static=True, default=1e-6)
    kernels: Kernels = eqx.field(static=True, default="reference")

    def __init__(self, features: int, *, eps: float = 1e-6, kernels: Kernels = "reference"):
        self.alpha = jnp.ones(features)
        self.eps = eps
        self.kernels = kernels

    def __call__(self, x: Float[Array, "*batch features"]) -> Float[Array, "*batch features"]:
        fn = sine.snake if self.kernels == "cpu_fast" else snake_reference
        return fn(x, self.alpha.astype(x.dtype), self.eps)
