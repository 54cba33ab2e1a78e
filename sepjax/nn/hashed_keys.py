"""A JAX PRNG implementation whose keys split and draw bits by integer hashing, for the train step's dropout keys.

Threefry-2x32 is JAX's default. XLA:CPU lowers each Threefry call as a loop over its five rounds, and the train
step of the paper's SepReformer splits its key about three hundred times on the way down to its dropout sites:
302 of the compiled step's 313 loops and a quarter of its fusions, for keys that only seed dropout masks
(docs/performance.md). These keys do the same with a few integer operations per word:

    child word j of child i:  lowbias32(lowbias32(i ^ key[j] ^ tweak_j) + key[1 − j])   (split, fold_in)
    bit word of element i:    lowbias32(lowbias32(i ^ key[0]) + key[1])                    (random_bits)

`lowbias32` is the 32-bit integer hash from C. Wellons' "hash prospector" search, as in `sepjax.nn.dropout`;
the tweaks keep a key's children, its folded keys and its bits apart. Dropout needs independent fair coins, not
cryptographic ones: `tests/test_hashed_keys.py` checks the bits' bytes, and the independence of the masks of
siblings, of parents and children and of consecutive folded keys, against what Threefry gives, and that a deep
tree of splits never repeats a key. The graph is the same on every backend.

`hashed(key)` turns any key (typed or a raw `uint32[2]`) into one of these, keeping its two words, so a run's
randomness stays a function of its key and step.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.random import define_prng_impl
from jaxtyping import Array

from sepjax.nn.dropout import lowbias32, seeded_hash

SPLIT_TWEAKS = (np.uint32(0x9E3779B9), np.uint32(0x7F4A7C15))
FOLD_TWEAKS = (np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35))
WORDS = 2


def _children(key: Array, index: Array, tweaks: tuple[np.uint32, np.uint32]) -> Array:
    """Keys (…, 2) derived from `key` (2,) for each element of `index` (uint32)."""
    words = [lowbias32(lowbias32(index ^ key[j] ^ tweaks[j]) + key[1 - j]) for j in range(WORDS)]
    return jnp.stack(words, axis=-1)


def _seed(seed: Array) -> Array:
    seed = jnp.asarray(seed)
    low = seed.astype(jnp.uint32)
    high = (seed >> 32).astype(jnp.uint32) if seed.dtype.itemsize == 8 else jnp.zeros((), jnp.uint32)
    return _children(jnp.stack([high, low]), jnp.zeros((), jnp.uint32), SPLIT_TWEAKS)


def _split(key: Array, shape: tuple[int, ...]) -> Array:
    index = lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    return _children(key, index, SPLIT_TWEAKS)


def _fold_in(key: Array, data: Array) -> Array:
    return _children(key, jnp.asarray(data).astype(jnp.uint32), FOLD_TWEAKS)


def _bits32(key: Array, count: int) -> Array:
    if count > 2**32:
        raise ValueError(f"hashed keys draw at most 2³² words per call, not {count}")
    return seeded_hash(lax.iota(jnp.uint32, count), key)


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    size = math.prod(shape)
    if bit_width == 64:
        words = _bits32(key, 2 * size).reshape(2, *shape).astype(jnp.uint64)
        return (words[0] << np.uint64(32)) | words[1]
    if bit_width not in (8, 16, 32):
        raise TypeError(f"hashed keys draw 8, 16, 32 or 64 bits, not {bit_width}")
    bits = _bits32(key, size).reshape(shape)
    # The high bits, which mix every bit of the input, for the narrower widths.
    return (bits >> np.uint32(32 - bit_width)).astype(jnp.dtype(f"uint{bit_width}"))


HASHED_KEYS = define_prng_impl(key_shape=(WORDS,), seed=_seed, split=_split, random_bits=_random_bits,
                               fold_in=_fold_in, name="sepjax_lowbias32x2", tag="lb32")
"""The implementation: pass it as `impl=` to `jax.random.key` or `jax.random.wrap_key_data`."""


def hashed(key: Array) -> Array:
    """`key`'s two 32-bit words as a key of `HASHED_KEYS`: a typed key, or raw keys (`uint32[..., 2]`), of any
    batch shape; a typed key of another implementation must hold two words too (Threefry's do)."""
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    if data.shape[-1:] != (WORDS,) or data.dtype != jnp.uint32:
        raise ValueError(f"hashed: a key of two uint32 words is needed, not {data.dtype}{list(data.shape)}")
    return jax.random.wrap_key_data(data, impl=HASHED_KEYS)
