"""The jitted, buffer-donating train step with a non-finite guard and an EMA.

`train_steps` runs several steps in one call (`lax.scan` over stacked batches): the same updates as as many
`train_step` calls, with one dispatch, one host sync and, on the CPU, one allocation of XLA's scratch memory.
"""

import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from sepjax.losses import CompositeLossConfig, aux_loss_weight, multi_loss
from sepjax.models.base import Separator, trainable
from sepjax.nn.hashed_keys import hashed
from sepjax.nn.stateful_norm import BATCH_AXIS
from sepjax.train.state import Batch, TrainState


def training_forward(model: Separator, mixtures: Array, keys: Array | None) -> tuple[Array, Array | None, Any]:
    """Training-mode forward over a batch: (estimates (B, J, C, T), aux (B, R, J, C, T) or None, new stats).

    The batch is one named vmap axis, so BatchNorm statistics cover the whole (global) batch.
    """
    return jax.vmap(lambda x, k: model.forward(x, inference=False, key=k), axis_name=BATCH_AXIS,
                    out_axes=(0, 0, None))(mixtures, keys)


def batch_loss(model: eqx.Module, batch: Batch, key: PRNGKeyArray | None, loss_config: CompositeLossConfig,
               aux_weight: Array | float = 0.0) -> tuple[Array, tuple[dict[str, Array], Any]]:
    """Training-mode forward of the whole batch, scored by the (multi-)loss; returns (loss, (terms, new stats))."""
    keys = None if key is None else jax.random.split(key, batch.mixture.shape[0])
    estimates, aux, stats = training_forward(model, batch.mixture, keys)
    loss, terms = multi_loss(estimates, aux, batch.targets, batch.mask, loss_config, aux_weight)
    return loss, (terms, stats)


def train_step(optimizer: optax.GradientTransformation, state: TrainState, batch: Batch,
               loss_config: CompositeLossConfig = CompositeLossConfig(), ema_decay: float = 0.0,
               ) -> tuple[TrainState, dict[str, Array]]:
    """One update. The old state's buffers are donated: do not reuse `state` afterwards.

    A non-finite loss or gradient skips the update (parameters, optimiser state and EMA stay as
    they were) and reports `skipped = 1`.
    """
    return _donating_step(batch, state, optimizer, loss_config, ema_decay)


def train_steps(optimizer: optax.GradientTransformation, state: TrainState, batches: Batch,
                loss_config: CompositeLossConfig = CompositeLossConfig(), ema_decay: float = 0.0,
                ) -> tuple[TrainState, dict[str, Array]]:
    """`len(batches.mixture)` updates in one call; each array of `batches` stacks one batch per step on a
    leading axis. Returns the final state and each metric stacked per step. Donates `state` like `train_step`.

    On XLA:CPU every call maps its scratch memory afresh, and faulting it in takes about a quarter of a
    dual-path SepReformer step's CPU time: one call of 8 steps pays that once.
    """
    return _donating_steps(batches, state, optimizer, loss_config, ema_decay)


CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1, "xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE"}
"""XLA:CPU compiles the train step with LLVM at optimisation level 1 instead of its default 3, and with XLA:CPU's
fast-compile preset: each took SepReformer-T's compile down by 10-15% and left its step no slower
(docs/performance.md). Other backends keep their defaults, and a level set in `XLA_FLAGS` wins."""


class _BackendJit:
    """An `eqx.filter_jit` of `fn` that donates all but its first argument, compiled with
    `CPU_COMPILER_OPTIONS` when JAX's default backend is the CPU (read at call time, after any
    `jax.distributed.initialize`)."""

    def __init__(self, fn):
        self.plain = eqx.filter_jit(fn, donate="all-except-first")
        self.cpu = eqx.filter_jit(fn, donate="all-except-first", compiler_options=CPU_COMPILER_OPTIONS)

    def jitted(self):
        chosen = "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", "")
        return self.cpu if jax.default_backend() == "cpu" and not chosen else self.plain

    def __call__(self, *args):
        return self.jitted()(*args)

    def lower(self, *args):
        return self.jitted().lower(*args)


@_BackendJit
def _donating_step(batch: Batch, state: TrainState, optimizer: optax.GradientTransformation,
                   loss_config: CompositeLossConfig, ema_decay: float) -> tuple[TrainState, dict[str, Array]]:
    return _update(batch, state, optimizer, loss_config, ema_decay)


@_BackendJit
def _donating_steps(batches: Batch, state: TrainState, optimizer: optax.GradientTransformation,
                    loss_config: CompositeLossConfig, ema_decay: float) -> tuple[TrainState, dict[str, Array]]:
    arrays, static = eqx.partition(state, eqx.is_array)

    def one_step(carry, batch):
        new, metrics = _update(batch, eqx.combine(carry, static), optimizer, loss_config, ema_decay)
        return eqx.filter(new, eqx.is_array), metrics

    arrays, metrics = jax.lax.scan(one_step, arrays, batches)
    return eqx.combine(arrays, static), metrics


def _update(batch: Batch, state: TrainState, optimizer: optax.GradientTransformation,
            loss_config: CompositeLossConfig, ema_decay: float) -> tuple[TrainState, dict[str, Array]]:
    # The model splits this step's key down to every dropout site: hashed keys split without Threefry's loops.
    key = hashed(state.step_key()) if state.model.config.dropout > 0 else None
    params, frozen = eqx.partition(state.model, trainable(state.model))

    def loss_of(p):
        return batch_loss(eqx.combine(p, frozen), batch, key, loss_config, aux_loss_weight(state.step, loss_config))

    (loss, (terms, stats)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    # Everything after the gradient runs on the parameters as one flat vector: a handful of fused loops where
    # one loop per parameter array (several, for the guard, the update and the EMA) made XLA:CPU compile for
    # minutes on many-array models. The optimiser (`optax.flatten`) keeps its state on the same flat vector.
    flat_params, unravel = ravel_pytree(params)
    flat_grads = ravel_pytree(grads)[0]
    grad_norm = jnp.sqrt(jnp.sum(jnp.square(flat_grads)))
    # A norm that overflows float32 is treated as non-finite too.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    flat_grads = jnp.where(finite, flat_grads, jnp.zeros_like(flat_grads))
    # optax's Adam raises its betas (Python floats) to the int32 step count, a promotion that JAX's strict mode
    # refuses; sepjax's own arithmetic stays under whatever mode the caller chose.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimizer.update(flat_grads, state.opt_state, flat_params)
    if state.plateau is not None:
        updates = updates * state.plateau.scale.astype(updates.dtype)
    new_flat = jnp.where(finite, flat_params + updates.astype(flat_params.dtype), flat_params)

    def keep_if_finite(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o) if eqx.is_array(n) else n, new, old)

    stats = None if stats is None else keep_if_finite(stats, state.model.stats)
    model = eqx.combine(unravel(new_flat), frozen).with_stats(stats)
    opt_state = keep_if_finite(opt_state, state.opt_state)
    ema = state.ema
    if ema is not None:
        ema_params, ema_rest = eqx.partition(ema, trainable(ema))
        flat_ema = ravel_pytree(ema_params)[0]
        blended = jnp.where(finite, ema_decay * flat_ema + (1 - ema_decay) * new_flat, flat_ema)
        ema = eqx.combine(unravel(blended), ema_rest).with_stats(stats)
    metrics = {"loss": loss, "grad_norm": grad_norm, **terms, "si_sdr": -terms["neg_si_sdr"],
               "skipped": (~finite).astype(jnp.int32)}
    return TrainState(state.step + 1, model, opt_state, ema, state.key, state.plateau), metrics
