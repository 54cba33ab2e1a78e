"""The optimiser an OptimConfig describes: clipping, AdamW, a schedule, optional accumulation."""

import optax

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


def build_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """`clipped_adamw` with the config's schedule [→ reduce-on-plateau of the training loss]; wrapped for
    accumulation; on the parameters as one flat vector, as `make_optimizer`."""
    parts = clipped_adamw(learning_rate(config, total_steps), config.weight_decay, config.clip_norm)
    if config.schedule == "plateau":
        parts.append(optax.contrib.reduce_on_plateau(factor=0.5, patience=config.plateau_patience,
                                                     accumulation_size=50))
    optimizer = optax.chain(*parts)
    if config.grad_accum > 1:
        optimizer = optax.MultiSteps(optimizer, every_k_schedule=config.grad_accum).gradient_transformation()
    return optax.flatten(optimizer)


def current_lr(config: OptimConfig, total_steps: int, step: int) -> float:
    schedule = learning_rate(config, total_steps)
    return float(schedule(step)) if callable(schedule) else float(schedule)
