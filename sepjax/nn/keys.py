"""PRNG keys for modules whose randomness is optional (dropout only when a key is given)."""

import jax
from jaxtyping import PRNGKeyArray


def split_keys(key: PRNGKeyArray | None, count: int = 2) -> tuple[PRNGKeyArray | None, ...]:
    """`count` independent keys from `key`, or `count` Nones when there is no key."""
    if key is None:
        return (None,) * count
    return tuple(jax.random.split(key, count))
