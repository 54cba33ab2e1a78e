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


def build_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """clip → AdamW(schedule) [→ reduce-on-plateau of the training loss]; wrapped for accumulation; all of it
    on the parameters as one flat vector (`optax.flatten`), as `make_optimizer`."""
    parts = [optax.clip_by_global_norm(config.clip_norm),
             optax.adamw(learning_rate(config, total_steps), weight_decay=config.weight_decay)]
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
