"""`x @ Wᵀ` with a weight gradient laid out for XLA:CPU.

The weight gradient contracts over every token, the major axis of both `x` and the output gradient `g`, so
XLA:CPU first transposes one of them into a scratch copy, and it picks `g` even when `g` is the wider one (a
3·dim q/k/v projection, an ff_dim feed-forward input). `project` transposes whichever of the two is narrower
and flips the small (out, in) result instead; the optimization barriers keep XLA from folding the transposes
back into the dot.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

_barrier = jax.lax.optimization_barrier


def transposed_product(a: Float[Array, "*batch tokens x"], b: Float[Array, "*batch tokens y"]
                       ) -> Float[Array, "*batch y x"]:
    """bᵀ a over the token axis, as (aᵀ b)ᵀ with aᵀ materialised: a row-major matmul instead of a strided one."""
    a_t = _barrier(jnp.swapaxes(a, -1, -2))
    return jnp.swapaxes(_barrier(a_t @ b), -1, -2)


@jax.custom_vjp
def project(x: Float[Array, "*lead in_features"], weight: Float[Array, "out_features in_features"]
            ) -> Float[Array, "*lead out_features"]:
    """`x @ weightᵀ`, with the weight gradient above (same values, fewer bytes transposed)."""
    return x @ weight.T


def _forward(x, weight):
    return x @ weight.T, (x, weight)


def _backward(residuals, grad):
    x, weight = residuals
    tokens_x = x.reshape(-1, x.shape[-1])
    tokens_grad = grad.reshape(-1, grad.shape[-1])
    if tokens_x.shape[-1] <= tokens_grad.shape[-1]:  # dWᵀ = xᵀ g, transposing x
        d_weight = transposed_product(tokens_x, tokens_grad)
    else:  # dW = gᵀ x, transposing g
        d_weight = _barrier(tokens_grad.T) @ tokens_x
    return grad @ weight, d_weight


project.defvjp(_forward, _backward)
