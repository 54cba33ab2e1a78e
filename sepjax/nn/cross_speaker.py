"""Cross-speaker block: at every time step the stems attend to each other (no positional encoding),
then a per-stem GCFN. It lets the decoder's shared-weight streams exchange what each one holds."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl
from sepjax.nn.gcfn import GCFN
from sepjax.nn.keys import split_keys
from sepjax.nn.relative_attention import MultiHeadAttention


class CrossSpeakerBlock(eqx.Module):
    attn: MultiHeadAttention
    gcfn: GCFN

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "auto", key: PRNGKeyArray):
        k_attn, k_gcfn = jax.random.split(key)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                       impl=impl, key=k_attn)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, key=k_gcfn)

    def __call__(self, x: Float[Array, "stems time dim"], *, key: PRNGKeyArray | None = None
                 ) -> Float[Array, "stems time dim"]:
        k_attn, k_gcfn = split_keys(key)
        per_step = jnp.swapaxes(x, 0, 1)  # (time, stems, dim): each time step is one attention batch
        x = x + jnp.swapaxes(self.attn(per_step, key=k_attn), 0, 1)
        keys = None if k_gcfn is None else jax.random.split(k_gcfn, x.shape[0])
        return jax.vmap(lambda s, k: self.gcfn(s, key=k))(x, keys)
