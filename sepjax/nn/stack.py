"""Repeated layers as one stacked module run by `lax.scan`, so a deep stack compiles once."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray, PyTree

from sepjax.nn.remat import recomputed

M = TypeVar("M", bound=eqx.Module)
X = TypeVar("X")
B = TypeVar("B")  # a module, or a tuple of modules


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


def scan_alike(
    blocks: Sequence[B], x: X, state: eqx.nn.State,
    apply: Callable[[B, X, eqx.nn.State, PRNGKeyArray | None], tuple[X, eqx.nn.State]], *,
    key: PRNGKeyArray | None, unroll: bool = False,
) -> tuple[X, eqx.nn.State]:
    """x, state ← apply(blocks[i], x, state, key_i) for each of `blocks`, in order, as one `lax.scan`.

    The blocks stay separate modules, with their own parameters and `StateIndex` names (as checkpoints and
    converters see them); their arrays are stacked when traced and each block's entries of `state` (BatchNorm
    statistics) travel through the scan beside them, so repeated blocks compile once. Every block must have
    the same array shapes. `unroll` applies them one after another instead: the reference the scan is tested
    against. Keys are `jax.random.split(key, len(blocks))` either way.
    """
    count = len(blocks)
    keys = None if key is None else jax.random.split(key, count)
    if unroll or count == 1:
        for i, block in enumerate(blocks):
            x, state = apply(block, x, state, None if keys is None else keys[i])
        return x, state
    parts = [eqx.partition(block, eqx.is_array) for block in blocks]
    leaves = [jax.tree.leaves(params) for params, _ in parts]
    substates = [jax.tree.flatten(state.substate(block)) for block in blocks]
    for i in range(1, count):
        for what, first, other in (("arrays", leaves[0], leaves[i]), ("state", substates[0][0], substates[i][0])):
            if [(a.shape, a.dtype) for a in first] != [(a.shape, a.dtype) for a in other]:
                raise ValueError(f"scan_alike: block {i}'s {what} differ in shape from block 0's")
    params_def = jax.tree.structure(parts[0][0])
    static, state_def = parts[0][1], substates[0][1]

    def body(carry, xs):
        block_leaves, stats, block_key = xs
        block = eqx.combine(jax.tree.unflatten(params_def, block_leaves), static)
        carry, sub = apply(block, carry, jax.tree.unflatten(state_def, stats), block_key)
        return carry, jax.tree.leaves(sub)

    def stack(lists):
        return [jnp.stack(column) for column in zip(*lists, strict=True)]

    x, new_stats = jax.lax.scan(body, x, (stack(leaves), stack([s for s, _ in substates]), keys))
    for i, (_, treedef) in enumerate(substates):
        state = state.update(jax.tree.unflatten(treedef, [leaf[i] for leaf in new_stats]))
    return x, state


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
