"""What training needs from any model family, in one place.

Every family implements `model(mixture, *, key)` (inference, one example), and
`model.train_forward(mixture, *, key) -> (estimates, aux_estimates | None, stats | None)` and
`model.with_stats(stats)`. Normalisation statistics (an `eqx.nn.State` inside the model) are
not parameters: the optimiser, the gradient and the EMA see only `parameters(model)`.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from sepjax.nn.stateful_norm import BATCH_AXIS


def _is_state(x: Any) -> bool:
    return isinstance(x, eqx.nn.State)


def _is_float_array(x: Any) -> bool:
    """A floating JAX array, or its abstract shape (so `count_params` works on `eqx.filter_eval_shape` output)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return eqx.is_inexact_array(x)


def trainable(model: eqx.Module) -> PyTree[bool]:
    """A filter spec: True for floating arrays outside any `eqx.nn.State`."""
    return jax.tree.map(lambda x: False if _is_state(x) else _is_float_array(x), model, is_leaf=_is_state)


def parameters(model: eqx.Module) -> eqx.Module:
    """The model with everything but its trainable parameters replaced by None."""
    return eqx.filter(model, trainable(model))


def count_params(model: eqx.Module) -> int:
    """Number of trainable floating-point parameters (normalisation statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(parameters(model)))


def training_forward(model: eqx.Module, mixtures: Float[Array, "batch in_channels time"],
                     keys: Array | None) -> tuple[Array, Array | None, Any]:
    """Training-mode forward over a batch: (estimates (B, J, C, T), aux (B, R, J, C, T) or None, new stats).

    The batch is one named vmap axis, so BatchNorm statistics cover the whole (global) batch.
    """
    return jax.vmap(lambda x, k: model.train_forward(x, key=k), axis_name=BATCH_AXIS,
                    out_axes=(0, 0, None))(mixtures, keys)
