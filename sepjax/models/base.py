"""What every model family is: a `Separator`, one example in, one waveform per stem out.

A separator runs in one of two modes, chosen explicitly and driving dropout and the normalisation layers
together:

- `model(mixture)` is inference: no dropout, BatchNorm on its running statistics.
- `model.forward(mixture, inference=False, key=key)` is training: dropout (with the key), BatchNorm on batch
  statistics. It returns `(estimates, auxiliary estimates or None, normalisation statistics or None)`; the
  train step stores the statistics back with `with_stats`.

Normalisation statistics (an `eqx.nn.State` in the model's `stats` field) are not parameters: the optimiser,
the gradient and the EMA see only `parameters(model)`.
"""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

Estimates = Float[Array, "stems out_channels time"]
AuxEstimates = Float[Array, "heads stems out_channels time"]


class Separator(eqx.Module):
    """The abstract base of the model families (Equinox's abstract/final pattern)."""

    config: eqx.AbstractVar[Any]
    """The frozen config the model was built from."""
    stats: eqx.AbstractVar[eqx.nn.State | None]
    """Normalisation statistics, or None for a family without any."""

    @abc.abstractmethod
    def forward(self, mixture: Float[Array, "in_channels time"], *, inference: bool,
                key: PRNGKeyArray | None = None) -> tuple[Estimates, AuxEstimates | None, eqx.nn.State | None]:
        """Separate one example in the given mode: (estimates, auxiliary estimates, new statistics)."""

    def __call__(self, mixture: Float[Array, "in_channels time"]) -> Estimates:
        """Inference: the estimates only."""
        return self.forward(mixture, inference=True)[0]

    def with_stats(self, stats: eqx.nn.State | None) -> "Separator":
        """The model holding the statistics a training forward returned (None, for a family without any)."""
        if (stats is None) != (self.stats is None):
            raise ValueError(f"{type(self).__name__} keeps {'no' if self.stats is None else ''} normalisation "
                             f"statistics; got {type(stats).__name__}")
        return self if stats is None else eqx.tree_at(lambda m: m.stats, self, stats)


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
