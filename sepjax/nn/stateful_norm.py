"""A normalisation that is either BatchNorm (running statistics in an `eqx.nn.State`) or stateless GroupNorm(1).

Both take and return the state, so a block is written once for either choice. BatchNorm needs
every batch axis it averages over to be a named `vmap` axis (`axis_name`) in training mode. It has
PyTorch's semantics (`sepjax.nn.batch_norm`): the paper's model trains and evaluates as the official
code does, and converted official checkpoints evaluate as they did there.
"""

from collections.abc import Hashable, Sequence
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.batch_norm import BatchNorm
from sepjax.nn.norm import GroupNorm1

NormKind = Literal["batch", "group"]
BATCH_AXIS = "batch"
"""The vmap axis name the train step gives the batch."""


class StatefulNorm(eqx.Module):
    """Normalise `(*lead, time, channels)`; returns `(y, state)`. `inference` selects running statistics."""

    batch_norm: BatchNorm | None
    group_norm: GroupNorm1 | None

    def __init__(self, channels: int, kind: NormKind, *, axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS):
        if kind == "batch":
            self.batch_norm = BatchNorm(channels, axis_name)
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
        y, state = self.batch_norm(x.astype(jnp.float32), state, inference=inference)
        return y.astype(x.dtype), state
