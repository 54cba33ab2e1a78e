"""Dropout whose mask is a small integer hash of each element's index, seeded by the key.

`jax.random.bernoulli` spends a whole Threefry-2x32 block (20 rounds) on every element, and each dropout site
compiles to its own large Threefry loop (docs/performance.md has what that costs SepReformer-T's train step).
Here the key buys two 32-bit seed words (one Threefry block; the train step's keys are `sepjax.nn.hashed_keys`,
whose words cost two hashes), and every element's bits are two rounds of the
`lowbias32` integer hash (from C. Wellons' "hash prospector" search) of its flat index mixed with those words:
about twenty integer operations per element, the same graph on every backend. Dropout needs
independent fair coins, not cryptographic ones; `tests/test_dropout.py` checks the keep rate, the independence
of neighbouring elements and of different keys against what `jax.random.bernoulli` gives.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, PRNGKeyArray


def lowbias32(x: Array) -> Array:
    x = x ^ (x >> 16)
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> 16)


def seeded_hash(index: Array, seed: Array) -> Array:
    """Two rounds of `lowbias32` of uint32 `index` mixed with the two seed words `seed`."""
    return lowbias32(lowbias32(index ^ seed[0]) + seed[1])


def uniform_bits(key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
    """32 pseudo-random bits per element of `shape` (at most 2³² elements), a function of `key` and the index."""
    size = int(np.prod(shape, dtype=np.int64))
    if size > 2**32:
        raise ValueError(f"uniform_bits: {size} elements exceed the 32-bit index")
    # The barrier keeps the seed words one computed pair: without it XLA fuses their derivation from the key
    # (a chain of hashes for `sepjax.nn.hashed_keys`' keys) into the loop over every element.
    seed = lax.optimization_barrier(jax.random.bits(key, (2,), jnp.uint32))
    index = lax.iota(jnp.uint32, size).reshape(shape)
    return seeded_hash(index, seed)


def keep_mask(key: PRNGKeyArray, shape: tuple[int, ...], rate: float) -> Array:
    """True where an element is kept: each independently with probability 1 − `rate` (to 2⁻³²)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate {rate} is outside [0, 1)")
    threshold = np.uint32(min(round(rate * 2.0**32), 2**32 - 1))
    return uniform_bits(key, shape) >= threshold


def dropout(x: Array, rate: float, *, key: PRNGKeyArray | None, inference: bool) -> Array:
    """Zero each element with probability `rate` and scale the rest by 1 / (1 − rate), as `eqx.nn.Dropout`;
    the identity in inference mode or at rate 0."""
    if inference or rate == 0:
        return x
    if key is None:
        raise RuntimeError("Dropout requires a key in training mode (inference=False)")
    keep = 1.0 - rate
    return jnp.where(keep_mask(key, x.shape, rate), x * jnp.asarray(1.0 / keep, x.dtype), jnp.zeros((), x.dtype))
