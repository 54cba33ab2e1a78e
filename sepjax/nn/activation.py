"""Activations: PyTorch's GLU, and the paper's feed-forward nonlinearity (exact GELU, or SNAKE for SepACap)."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.remat import recomputed
from sepjax.nn.snake import Snake

ActivationKind = Literal["gelu", "snake"]


@recomputed  # the backward recomputes the sigmoid: only `x` is kept, not its halves and σ
def glu(x: Float[Array, "*lead features"]) -> Float[Array, "*lead half"]:
    """PyTorch's GLU over the last axis: first half ⊙ σ(second half)."""
    value, gate = jnp.split(x, 2, axis=-1)
    return value * jax.nn.sigmoid(gate)


class Activation(eqx.Module):
    """GELU (erf form, as `torch.nn.GELU()`), or SNAKE with a learnable per-channel alpha."""

    snake: Snake | None

    def __init__(self, features: int, kind: ActivationKind):
        if kind not in ("gelu", "snake"):
            raise ValueError(f"activation {kind!r} must be 'gelu' or 'snake'")
        self.snake = Snake(features) if kind == "snake" else None

    def __call__(self, x: Float[Array, "*lead features"]) -> Float[Array, "*lead features"]:
        return jax.nn.gelu(x, approximate=False) if self.snake is None else self.snake(x)
