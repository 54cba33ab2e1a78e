"""The optimiser and the jitted, buffer-donating train step."""

import equinox as eqx
import jax
import optax
from jaxtyping import Array, PRNGKeyArray

from sepjax.losses import CompositeLossConfig, composite_loss
from sepjax.train.state import Batch, TrainState


def make_optimizer(lr: float | optax.Schedule = 3e-4, weight_decay: float = 1e-2,
                   clip_norm: float = 1.0) -> optax.GradientTransformation:
    """clip_by_global_norm, then AdamW: the tutorial's recipe."""
    return optax.chain(optax.clip_by_global_norm(clip_norm),
                       optax.adamw(lr, weight_decay=weight_decay))


def batch_loss(model: eqx.Module, batch: Batch, key: PRNGKeyArray | None,
               loss_config: CompositeLossConfig) -> tuple[Array, dict[str, Array]]:
    """Forward the whole batch (vmap over examples) and score it with the composite loss."""
    keys = None if key is None else jax.random.split(key, batch.mixture.shape[0])
    estimates = jax.vmap(lambda x, k: model(x, key=k))(batch.mixture, keys)
    return composite_loss(estimates, batch.targets, batch.mask, loss_config)


def train_step(optimizer: optax.GradientTransformation, state: TrainState, batch: Batch,
               loss_config: CompositeLossConfig = CompositeLossConfig(),
               ) -> tuple[TrainState, dict[str, Array]]:
    """One AdamW update. The old state's buffers are donated: do not reuse `state` afterwards."""
    return _donating_step(batch, state, optimizer, loss_config)


@eqx.filter_jit(donate="all-except-first")
def _donating_step(batch: Batch, state: TrainState, optimizer: optax.GradientTransformation,
                   loss_config: CompositeLossConfig) -> tuple[TrainState, dict[str, Array]]:
    key = state.step_key() if state.model.config.dropout > 0 else None
    grad_fn = eqx.filter_value_and_grad(batch_loss, has_aux=True)
    (loss, terms), grads = grad_fn(state.model, batch, key, loss_config)
    params = eqx.filter(state.model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, state.opt_state, params)
    model = eqx.apply_updates(state.model, updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **terms,
               "si_sdr": -terms["neg_si_sdr"]}
    return TrainState(state.step + 1, model, opt_state, state.key), metrics
