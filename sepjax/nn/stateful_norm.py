"""A normalisation that is either BatchNorm (running statistics in an `eqx.nn.State`) or stateless GroupNorm(1).

Both take and return the state, so a block is written once for either choice. BatchNorm needs
every batch axis it averages over to be a named `vmap` axis (`axis_name`) in training mode.
"""

from collections.abc import Hashable, Sequence
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.norm import GroupNorm1

NormKind = Literal["batch", "group"]
BATCH_AXIS = "batch"
"""The vmap axis name the train step gives the batch."""
BATCHNORM_MOMENTUM = 0.9
"""Running average: new = 0.9·old + 0.1·batch, PyTorch's BatchNorm1d default (momentum=0.1)."""


class StatefulNorm(eqx.Module):
    """Normalise `(*lead, time, channels)`; returns `(y, state)`. `inference` selects running statistics."""

    batch_norm: eqx.nn.BatchNorm | None
    group_norm: GroupNorm1 | None

    def __init__(self, channels: int, kind: NormKind, *, axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS):
        if kind == "batch":
            self.batch_norm = eqx.nn.BatchNorm(channels, axis_name, momentum=BATCHNORM_MOMENTUM, mode="batch")
            self.group_norm = None
        elif kind == "group":
            self.batch_norm = None
            self.group_norm = GroupNorm1(channels)
        else:
            raise ValueError(f"norm kind {kind!r} must be 'batch' or 'group'")

    def __call__(self, x: Float[Array, "*lead time channels"], state: eqx.nn.State, *, inference: bool
                 ) -> tuple[Float[Array, "*lead time channels"], eqx.nn.State]:
        if self.group_norm is not None:
            return self.group_norm(x), state
        channels_first = jnp.moveaxis(x.astype(jnp.float32), -1, 0)
        y, state = self.batch_norm(channels_first, state, inference=inference)
        return jnp.moveaxis(y, 0, -1).astype(x.dtype), state
