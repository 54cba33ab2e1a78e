"""Training state and the batch it consumes."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from sepjax.models.base import parameters


class Batch(NamedTuple):
    """One training batch: the mixture is the sum of the targets; mask marks stems that exist."""

    mixture: Float[Array, "batch channels time"]
    targets: Float[Array, "batch stems channels time"]
    mask: Float[Array, "batch stems"]

    @classmethod
    def from_targets(cls, targets, mask=None) -> "Batch":
        """Build a batch whose mixture is the sum of `targets` (NumPy or JAX)."""
        targets = jnp.asarray(targets, dtype=jnp.float32)
        if mask is None:
            mask = np.ones(targets.shape[:2], np.float32)
        return cls(jnp.sum(targets, axis=1), targets, jnp.asarray(mask, dtype=jnp.float32))


class TrainState(eqx.Module):
    """Everything a step reads and replaces: step count, model, optimiser state, EMA weights, RNG key, and the
    reduce-on-plateau state when the schedule has one."""

    step: Int[Array, ""]
    model: eqx.Module
    opt_state: optax.OptState
    ema: eqx.Module | None
    """Exponential moving average of the model's weights; None when disabled."""
    key: PRNGKeyArray
    plateau: optax.OptState | None = None
    """`optim.plateau`'s state, advanced once per validation round; its `scale` multiplies every update."""

    @classmethod
    def create(cls, model: eqx.Module, optimizer: optax.GradientTransformation, *,
               key: PRNGKeyArray, ema: bool = False, plateau: optax.OptState | None = None) -> "TrainState":
        opt_state = optimizer.init(parameters(model))
        average = jax.tree.map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, model) if ema else None
        return cls(jnp.zeros((), jnp.int32), model, opt_state, average, key, plateau)

    def step_key(self) -> PRNGKeyArray:
        """This step's RNG: the run key with the step count folded in."""
        return jax.random.fold_in(self.key, self.step)
