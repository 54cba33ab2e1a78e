"""Recomputation in the backward pass, which a graph exporter can turn off.

`recomputed(fn)` is `jax.checkpoint(fn)`: the backward keeps `fn`'s inputs and recomputes what it needs instead
of storing `fn`'s intermediates. A checkpoint changes only what the backward stores, never a forward value, so
inside `plain_forward()` (read when a function is traced) `recomputed(fn)` is `fn` itself. The ONNX exporter
traces there, because jax2onnx cannot lower a `checkpoint` region whose jaxpr appears more than once.
"""

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax

_PLAIN = contextvars.ContextVar("sepjax_plain_forward", default=False)


def recomputed(fn: Callable[..., Any] | None = None, *, static_argnums: tuple[int, ...] = ()
               ) -> Callable[..., Any]:
    """`jax.checkpoint(fn, static_argnums=...)`, or `fn` when traced inside `plain_forward()`; also a decorator
    (`@recomputed` or `@recomputed(static_argnums=...)`)."""
    if fn is None:
        return functools.partial(recomputed, static_argnums=static_argnums)
    checkpointed = jax.checkpoint(fn, static_argnums=static_argnums)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(*args, **kwargs) if _PLAIN.get() else checkpointed(*args, **kwargs)

    return call


@contextlib.contextmanager
def plain_forward() -> Iterator[None]:
    """Trace without checkpoint regions (same values; only for graphs that are never differentiated)."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)
