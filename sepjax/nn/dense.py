"""Dense projections `x @ Wᵀ` over whole `(..., in_features)` arrays (one matmul, no vmap).

`project` is the design-card transformer's projection, with a CPU-friendly weight gradient. That gradient
contracts over every token, the major axis of both `x` and the output gradient `g`, so XLA:CPU first
transposes one of them into a scratch copy, and it picks `g` even when `g` is the wider one (the 3·dim
q/k/v projection, the ff_dim feed-forward input). On the CPU `project` transposes whichever of the two
is narrower and flips the small (out, in) result instead; the optimization barriers keep XLA from
folding the transposes back into the dot.
"""

import equinox as eqx
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
def _project_narrow_transpose(x: Float[Array, "*lead in_features"], weight: Float[Array, "out_features in_features"]
                              ) -> Float[Array, "*lead out_features"]:
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


_project_narrow_transpose.defvjp(_forward, _backward)


def project(x: Float[Array, "*lead in_features"], weight: Float[Array, "out_features in_features"]
            ) -> Float[Array, "*lead out_features"]:
    """`x @ weightᵀ`; on the CPU with the weight gradient above (same values, fewer bytes transposed)."""
    if jax.default_backend() == "cpu":
        return _project_narrow_transpose(x, weight)
    return x @ weight.T


def dense(layer: eqx.nn.Linear, x: Float[Array, "*lead in_features"]) -> Float[Array, "*lead out_features"]:
    """Apply an `eqx.nn.Linear` to a whole `(..., in_features)` array at once.

    Autodiff's plain backward, which the paper model's checkpointed layers rely on to keep few residuals.
    """
    y = x @ layer.weight.T.astype(x.dtype)
    return y if layer.bias is None else y + layer.bias.astype(x.dtype)


@jax.checkpoint  # the backward recomputes the sigmoid: only `x` is kept, not its halves and σ
def glu(x: Float[Array, "*lead features"]) -> Float[Array, "*lead half"]:
    """PyTorch's GLU over the last axis: first half ⊙ σ(second half)."""
    value, gate = jnp.split(x, 2, axis=-1)
    return value * jax.nn.sigmoid(gate)
