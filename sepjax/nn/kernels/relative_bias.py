"""The relative-position score bias q_i · p[i − j] from one key per offset, for XLA:CPU.

The reference (`sepjax.models.sepreformer.blocks.relative_positions` given one key per (query, key) pair)
contracts each query with its own row of keys: a batch of seq small products, whose (seq, heads, seq) result
XLA:CPU then transposes to the scores' (heads, seq, seq) layout. Here each query meets the 2·seq − 1 offsets'
keys in one plain product, and the scores' diagonals are read off by the relative shift of Transformer-XL
(Dai et al., 2019): row i of the (seq, 2·seq − 1) product, read from its flattened form with rows of length
2·seq − 2, starts at offset seq − 1 − i. Reshapes and slices, whose gradients are pads: no gather, no scatter.
Same values as the reference; tests/test_kernels.py checks values and gradients against it.
"""

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float


def relative_bias(q: Float[Array, "*lead seq heads head_dim"], by_offset: Float[Array, "offsets head_dim"]
                  ) -> Float[Array, "*lead heads seq seq"]:
    """bias[..., h, i, j] = q[..., i, h, :] · by_offset[i − j + seq − 1], for `by_offset` holding the keys of
    the offsets −(seq − 1) … seq − 1 in order."""
    seq = q.shape[-3]
    if by_offset.shape[0] != 2 * seq - 1:
        raise ValueError(f"relative_bias: {by_offset.shape[0]} offset keys for a sequence of {seq}; "
                         f"expected {2 * seq - 1}")
    # Column c of row i holds offset j − i + seq − 1 = c with the keys reversed, so that row i's scores start
    # at column seq − 1 − i and run left to right over j.
    scores = jnp.einsum("...thd,od->...hto", q, by_offset[::-1].astype(q.dtype))
    if seq == 1:
        return scores
    lead = scores.shape[:-2]
    flat = scores.reshape(*lead, seq * (2 * seq - 1))
    flat = lax.slice_in_dim(flat, seq - 1, seq - 1 + seq * (2 * seq - 2), axis=-1)
    return flat.reshape(*lead, seq, 2 * seq - 2)[..., :seq]
