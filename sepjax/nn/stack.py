"""Repeated layers as one stacked module run by `lax.scan`, so a deep stack compiles once."""

from collections.abc import Callable
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray, PyTree

from sepjax.nn.remat import recomputed

M = TypeVar("M", bound=eqx.Module)
X = TypeVar("X")


def stacked(make: Callable[[PRNGKeyArray], M], count: int, *, key: PRNGKeyArray) -> M:
    """Build `count` independent layers whose arrays share a new leading axis."""
    return eqx.filter_vmap(make)(jax.random.split(key, count))


def scan_blocks(
    blocks: M, x: X, apply: Callable[[M, X, PRNGKeyArray | None], X], *,
    key: PRNGKeyArray | None, remat: bool = False, unroll: bool = False,
) -> X:
    """x ← apply(block_i, x, key_i) for each layer of a `stacked` module, in order.

    `unroll` lowers the scan as straight-line code (the body is still traced once).
    """
    params, static = eqx.partition(blocks, eqx.is_array)
    count = jax.tree.leaves(params)[0].shape[0]
    keys = None if key is None else jax.random.split(key, count)

    def body(carry, layer):
        layer_params, layer_key = layer
        return apply(eqx.combine(layer_params, static), carry, layer_key), None

    if remat:
        body = recomputed(body)
    out, _ = jax.lax.scan(body, x, (params, keys), unroll=unroll)
    return out


def cast_floating(tree: PyTree, dtype: jnp.dtype, *, keep: type | tuple[type, ...] = ()) -> PyTree:
    """Cast every floating array leaf to `dtype` (a no-op for float32 models run in float32).

    Subtrees that are instances of `keep` (e.g. normalisation layers that compute in float32) are left as they are.
    """

    def cast(leaf: Any) -> Any:
        if eqx.is_inexact_array(leaf) and leaf.dtype != dtype:
            return leaf.astype(dtype)
        return leaf

    if not keep:
        return jax.tree.map(cast, tree)
    return jax.tree.map(lambda x: x if isinstance(x, keep) else cast(x), tree, is_leaf=lambda x: isinstance(x, keep))
