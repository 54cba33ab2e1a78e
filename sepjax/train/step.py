"""The optimiser and the jitted, buffer-donating train step with a non-finite guard and an EMA."""

import equinox as eqx
import jax
import jax.numpy as jnp
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
               loss_config: CompositeLossConfig = CompositeLossConfig(), ema_decay: float = 0.0,
               ) -> tuple[TrainState, dict[str, Array]]:
    """One update. The old state's buffers are donated: do not reuse `state` afterwards.

    A non-finite loss or gradient skips the update (parameters, optimiser state and EMA stay as
    they were) and reports `skipped = 1`.
    """
    return _donating_step(batch, state, optimizer, loss_config, ema_decay)


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


@eqx.filter_jit(donate="all-except-first")
def _donating_step(batch: Batch, state: TrainState, optimizer: optax.GradientTransformation,
                   loss_config: CompositeLossConfig, ema_decay: float) -> tuple[TrainState, dict[str, Array]]:
    key = state.step_key() if state.model.config.dropout > 0 else None
    grad_fn = eqx.filter_value_and_grad(batch_loss, has_aux=True)
    (loss, terms), grads = grad_fn(state.model, batch, key, loss_config)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    grads = jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)
    params = eqx.filter(state.model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, state.opt_state, params, value=loss)
    model = eqx.apply_updates(state.model, updates)

    def keep_if_finite(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o) if eqx.is_array(n) else n, new, old)

    model = keep_if_finite(model, state.model)
    opt_state = keep_if_finite(opt_state, state.opt_state)
    ema = state.ema
    if ema is not None:
        blended = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p,
                               eqx.filter(ema, eqx.is_inexact_array), eqx.filter(model, eqx.is_inexact_array))
        ema = keep_if_finite(eqx.combine(blended, eqx.filter(ema, eqx.is_inexact_array, inverse=True)), ema)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **terms, "si_sdr": -terms["neg_si_sdr"],
               "skipped": (~finite).astype(jnp.int32)}
    return TrainState(state.step + 1, model, opt_state, ema, state.key), metrics
