"""Global block of the paper's SepReformer: efficient global attention (EGA), then GCFN.

EGA attends at the bottleneck frame rate whatever the stage's own rate: average-pool to the
bottleneck length, multi-head self-attention with relative-position keys, nearest upsampling back,
and a sigmoid gate from the full-rate input: x + σ(Linear(LN(x))) ⊙ up(MHSA(pool(x))).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl
from sepjax.nn.dense import dense
from sepjax.nn.gcfn import GCFN
from sepjax.nn.keys import split_keys
from sepjax.nn.norm import LayerNorm
from sepjax.nn.relative_attention import MultiHeadAttention


class EfficientGlobalAttention(eqx.Module):
    attn: MultiHeadAttention
    gate_norm: LayerNorm
    gate: eqx.nn.Linear

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "auto", key: PRNGKeyArray):
        k_attn, k_gate = jax.random.split(key)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                       impl=impl, key=k_attn)
        self.gate_norm = LayerNorm(dim)
        self.gate = eqx.nn.Linear(dim, dim, key=k_gate)

    def __call__(self, x: Float[Array, "time dim"], positions: Float[Array, "pooled pooled head_dim"], *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "time dim"]:
        time, dim = x.shape
        pooled_length = positions.shape[0]
        if time % pooled_length:
            raise ValueError(f"stage length {time} is not a multiple of the bottleneck length {pooled_length}")
        span = time // pooled_length
        pooled = jnp.mean(x.reshape(pooled_length, span, dim), axis=1)
        attended = jnp.repeat(self.attn(pooled, positions, key=key), span, axis=0)
        return x + jax.nn.sigmoid(dense(self.gate, self.gate_norm(x))) * attended


class GlobalBlock(eqx.Module):
    ega: EfficientGlobalAttention
    gcfn: GCFN

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "auto", key: PRNGKeyArray):
        k_ega, k_gcfn = jax.random.split(key)
        self.ega = EfficientGlobalAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                            impl=impl, key=k_ega)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, key=k_gcfn)

    def __call__(self, x: Float[Array, "time dim"], positions: Float[Array, "pooled pooled head_dim"], *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "time dim"]:
        k_ega, k_gcfn = split_keys(key)
        return self.gcfn(self.ega(x, positions, key=k_ega), key=k_gcfn)
