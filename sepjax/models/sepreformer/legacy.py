"""Weights saved when the paper's model used `eqx.nn.BatchNorm(mode="batch")` (bundle formats 1 and 2).

Those files store, per BatchNorm, a step counter and running statistics that inference divided by
1 − 0.9^counter. They load into today's PyTorch-semantics BatchNorm with the statistics divided once,
here, so that the model normalises with exactly the values it used before.
"""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.models.sepreformer.model import SepReformer, SepReformerNetwork
from sepjax.nn.batch_norm import BatchNorm

EQUINOX_MOMENTUM = 0.9


def _is_norm(x) -> bool:
    return isinstance(x, BatchNorm | eqx.nn.BatchNorm)


def _norms(tree) -> list:
    return [x for x in jax.tree.leaves(tree, is_leaf=_is_norm) if _is_norm(x)]


def load_equinox_batch_norm_weights(path: str | Path, config: SepReformerConfig) -> SepReformer:
    """Deserialise a format-1/2 weights file of `config` and convert its BatchNorm statistics."""
    model = SepReformer(config, key=jax.random.PRNGKey(0))
    fresh = SepReformerNetwork(config, key=jax.random.PRNGKey(0))
    old_style = eqx.tree_at(_norms, fresh, [
        eqx.nn.BatchNorm(bn.weight.shape[0], bn.axis_name, momentum=EQUINOX_MOMENTUM, mode="batch")
        for bn in _norms(fresh)])
    old_network, old_stats = eqx.nn.make_with_state(lambda: old_style)()
    old = eqx.tree_deserialise_leaves(path, eqx.tree_at(lambda m: (m.network, m.stats), model,
                                                        (old_network, old_stats)))
    stats = jax.tree.map(lambda x: x, model.stats)
    converted = []
    for before, after in zip(_norms(old.network), _norms(model.network), strict=True):
        counter = old.stats.get(before.batch_counter)
        mean, var = old.stats.get(before.batch_state_index)
        scale = jnp.where(counter == 0, 1.0, 1.0 - EQUINOX_MOMENTUM**counter)
        stats = stats.set(after.stats, (mean / scale, var / scale, counter.astype(jnp.int32)))
        converted.append(eqx.tree_at(lambda b: (b.weight, b.bias), after, (before.weight, before.bias)))
    network = eqx.tree_at(_norms, old.network, converted)
    return eqx.tree_at(lambda m: (m.network, m.stats), model, (network, stats))
