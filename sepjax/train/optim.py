"""The optimiser an OptimConfig describes: clipping, AdamW, a schedule, optional accumulation.

Reduce-on-plateau (`schedule="plateau"`) is not part of the optimiser: it watches validation rounds, not steps.
Its state lives in `TrainState.plateau`, `after_validation` advances it once per round, and the train step
scales every update by its `scale`.
"""

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from sepjax.train.config import OptimConfig


def learning_rate(config: OptimConfig, total_steps: int) -> optax.Schedule | float:
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, config.lr, warmup_steps=min(config.warmup_steps, max(total_steps - 1, 1)),
            decay_steps=max(total_steps, 2), end_value=config.lr * config.min_lr_ratio)
    if config.warmup_steps:
        return optax.linear_schedule(0.0, config.lr, config.warmup_steps)
    return config.lr


def clipped_adamw(lr: float | optax.Schedule, weight_decay: float, clip_norm: float
                  ) -> list[optax.GradientTransformation]:
    """clip_by_global_norm, then AdamW: the tutorial's recipe, the core of every sepjax optimiser."""
    return [optax.clip_by_global_norm(clip_norm), optax.adamw(lr, weight_decay=weight_decay)]


def make_optimizer(lr: float | optax.Schedule = 3e-4, weight_decay: float = 1e-2,
                   clip_norm: float = 1.0) -> optax.GradientTransformation:
    """`clipped_adamw` on the parameters as one flat vector (`optax.flatten`: the same update, a few fused loops
    instead of several per parameter array)."""
    return optax.flatten(optax.chain(*clipped_adamw(lr, weight_decay, clip_norm)))


def build_optimizer(config: OptimConfig, total_steps: int, frozen=None) -> optax.GradientTransformation:
    """`clipped_adamw` with the config's schedule; wrapped for accumulation; on the parameters as one flat
    vector, as `make_optimizer`. `frozen` (boolean arrays shaped as the parameters, `init_from.frozen_mask`)
    keeps the parameters it marks where they are."""
    optimizer = optax.chain(*clipped_adamw(learning_rate(config, total_steps), config.weight_decay,
                                           config.clip_norm))
    if config.grad_accum > 1:
        optimizer = optax.MultiSteps(optimizer, every_k_schedule=config.grad_accum).gradient_transformation()
    if frozen is None or not any(bool(f.any()) for f in jax.tree.leaves(frozen)):
        return optax.flatten(optimizer)
    return optax.chain(optax.flatten(optimizer), zero_frozen(frozen))


def zero_frozen(frozen) -> optax.GradientTransformation:
    """Set the updates of the parameters `frozen` marks to zero (weight decay included: they do not move). The
    updates are the flat vector the train step passes (`jax.flatten_util.ravel_pytree` of the parameters)."""
    mask = ravel_pytree(frozen)[0]

    def update(updates, state, params=None):
        return jnp.where(mask, jnp.zeros_like(updates), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def plateau(patience: int) -> optax.GradientTransformationExtraArgs:
    """Halve the learning rate after `patience` validation rounds without a lower loss (one round, one value)."""
    return optax.contrib.reduce_on_plateau(factor=0.5, patience=patience, accumulation_size=1)


def initial_plateau(config: OptimConfig) -> optax.OptState | None:
    """The plateau state a new run starts with; None unless `schedule="plateau"`."""
    return plateau(config.plateau_patience).init(jnp.zeros(())) if config.schedule == "plateau" else None


@jax.jit(static_argnums=0)
def _plateau_round(patience: int, state: optax.OptState, loss: jax.Array) -> optax.OptState:
    return plateau(patience).update(jnp.zeros(()), state, value=loss)[1]


def after_validation(config: OptimConfig, state: optax.OptState | None, metric: float) -> optax.OptState | None:
    """The plateau state after one validation round whose metric (higher is better) was `metric`."""
    if state is None:
        return None
    return _plateau_round(config.plateau_patience, state, jnp.asarray(-metric, jnp.float32))


def current_lr(config: OptimConfig, total_steps: int, step: int, plateau_state: optax.OptState | None = None
               ) -> float:
    schedule = learning_rate(config, total_steps)
    lr = float(schedule(step)) if callable(schedule) else float(schedule)
    return lr if plateau_state is None else lr * float(plateau_state.scale)
