"""Dual-path block (Luo & Mesgarani, 2020): attention within chunks, then across chunks."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl
from sepjax.nn.keys import split_keys
from sepjax.nn.transformer import TransformerBlock


def pad_to_multiple(x: Float[Array, "*lead frames dim"], multiple: int) -> Float[Array, "*lead padded dim"]:
    """Zero-pad the frame axis up to the next multiple of `multiple`."""
    pad = -x.shape[-2] % multiple
    return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, pad), (0, 0)]) if pad else x


class DualPathBlock(eqx.Module):
    """Intra-chunk transformer over (chunks, K, dim), then inter-chunk over (K, chunks, dim); any leading axes are
    independent sequences (e.g. stems)."""

    intra: TransformerBlock
    inter: TransformerBlock
    chunk_size: int = eqx.field(static=True)

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, chunk_size: int, *, dropout: float = 0.0,
        layer_scale_init: float = 1e-4, attention_impl: AttentionImpl = "auto",
        key: PRNGKeyArray,
    ):
        k_intra, k_inter = jax.random.split(key)
        kwargs = dict(dropout=dropout, layer_scale_init=layer_scale_init,
                      attention_impl=attention_impl)
        self.intra = TransformerBlock(dim, num_heads, ff_dim, key=k_intra, **kwargs)
        self.inter = TransformerBlock(dim, num_heads, ff_dim, key=k_inter, **kwargs)
        self.chunk_size = chunk_size

    def __call__(
        self, x: Float[Array, "*lead frames dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "*lead frames dim"]:
        *lead, frames, dim = x.shape
        chunks = pad_to_multiple(x, self.chunk_size).reshape(*lead, -1, self.chunk_size, dim)
        k_intra, k_inter = split_keys(key)
        chunks = self.intra(chunks, key=k_intra)
        across = self.inter(jnp.swapaxes(chunks, -3, -2), key=k_inter)
        return jnp.swapaxes(across, -3, -2).reshape(*lead, -1, dim)[..., :frames, :]
