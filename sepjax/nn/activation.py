"""The feed-forward nonlinearity of the paper's SepReformer blocks: exact GELU, or SNAKE (SepACap)."""

from typing import Literal

import equinox as eqx
import jax
from jaxtyping import Array, Float

from sepjax.nn.snake import Snake

ActivationKind = Literal["gelu", "snake"]


class Activation(eqx.Module):
    """GELU (erf form, as `torch.nn.GELU()`), or SNAKE with a learnable per-channel alpha."""

    snake: Snake | None

    def __init__(self, features: int, kind: ActivationKind):
        if kind not in ("gelu", "snake"):
            raise ValueError(f"activation {kind!r} must be 'gelu' or 'snake'")
        self.snake = Snake(features) if kind == "snake" else None

    def __call__(self, x: Float[Array, "*lead features"]) -> Float[Array, "*lead features"]:
        return jax.nn.gelu(x, approximate=False) if self.snake is None else self.snake(x)
