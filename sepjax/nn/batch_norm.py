"""BatchNorm with PyTorch's `BatchNorm1d` semantics, its statistics in an `eqx.nn.State`.

`eqx.nn.BatchNorm(mode="batch")` keeps the biased batch variance and, in inference, divides the
running statistics by 1 − momentum^counter. PyTorch keeps the unbiased variance and uses the running
statistics as they are, and so do the paper's SepReformer and every checkpoint converted from it:
this layer does what PyTorch does, so that trained and converted models evaluate alike.

    training:  y = (x − μ_B) / √(σ²_B + eps) · γ + β         μ_B, σ²_B over every batch axis and time (biased)
               running_mean ← (1 − m)·running_mean + m·μ_B
               running_var  ← (1 − m)·running_var  + m·σ²_B·n/(n − 1)   n = elements per channel
               num_batches_tracked ← num_batches_tracked + 1
    inference: y = (x − running_mean) / √(running_var + eps) · γ + β
"""

from collections.abc import Hashable, Sequence

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

TORCH_MOMENTUM = 0.1
"""PyTorch's default: new = 0.9·old + 0.1·batch."""

RunningStats = tuple[Float[Array, " channels"], Float[Array, " channels"], Int[Array, ""]]


class BatchNorm(eqx.Module):
    """Normalise `(*lead, channels)` over `lead` and the named vmap axes `axis_name` (training mode)."""

    weight: Float[Array, " channels"]
    bias: Float[Array, " channels"]
    stats: eqx.nn.StateIndex
    """(running_mean, running_var, num_batches_tracked), initialised as PyTorch does: zeros, ones, 0."""
    axis_name: Hashable | Sequence[Hashable] = eqx.field(static=True)
    eps: float = eqx.field(static=True, default=1e-5)
    momentum: float = eqx.field(static=True, default=TORCH_MOMENTUM)

    def __init__(self, channels: int, axis_name: Hashable | Sequence[Hashable], *, eps: float = 1e-5,
                 momentum: float = TORCH_MOMENTUM):
        self.weight = jnp.ones(channels, jnp.float32)
        self.bias = jnp.zeros(channels, jnp.float32)
        self.stats = eqx.nn.StateIndex((jnp.zeros(channels, jnp.float32), jnp.ones(channels, jnp.float32),
                                        jnp.array(0, jnp.int32)))
        self.axis_name = axis_name
        self.eps = eps
        self.momentum = momentum

    def __call__(self, x: Float[Array, "*lead channels"], state: eqx.nn.State, *, inference: bool
                 ) -> tuple[Float[Array, "*lead channels"], eqx.nn.State]:
        running_mean, running_var, tracked = state.get(self.stats)
        if inference:
            mean, var = running_mean, running_var
        else:
            lead = tuple(range(x.ndim - 1))
            mean = lax.pmean(jnp.mean(x, axis=lead), self.axis_name)
            var = lax.pmean(jnp.mean(jnp.square(x - mean), axis=lead), self.axis_name)
            count = x.size // x.shape[-1] * lax.psum(1, self.axis_name)
            unbiased = var * (count / jnp.maximum(count - 1, 1))
            m = self.momentum
            state = state.set(self.stats, ((1 - m) * running_mean + m * mean, (1 - m) * running_var + m * unbiased,
                                           tracked + 1))
        return (x - mean) * lax.rsqrt(var + self.eps) * self.weight + self.bias, state
