"""Apply an `eqx.nn.Linear` to a whole `(..., in_features)` array at once (one matmul, no vmap)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def dense(layer: eqx.nn.Linear, x: Float[Array, "*lead in_features"]) -> Float[Array, "*lead out_features"]:
    y = x @ layer.weight.T.astype(x.dtype)
    return y if layer.bias is None else y + layer.bias.astype(x.dtype)


@jax.checkpoint  # the backward recomputes the sigmoid: only `x` is kept, not its halves and σ
def glu(x: Float[Array, "*lead features"]) -> Float[Array, "*lead half"]:
    """PyTorch's GLU over the last axis: first half ⊙ σ(second half)."""
    value, gate = jnp.split(x, 2, axis=-1)
    return value * jax.nn.sigmoid(gate)
