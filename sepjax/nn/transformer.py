"""Pre-LN transformer block: RoPE self-attention and a SNAKE feed-forward, each behind LayerScale.

Blocks take any leading axes (`(*lead, seq, dim)`) and treat them as independent sequences. Callers pass
all sequences at once instead of `jax.vmap`-ing a block: under vmap each projection's weight gradient is
one small matmul per sequence (K = seq) and a sum, where one call contracts over every token at once.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl, SelfAttention
from sepjax.nn.dense import project
from sepjax.nn.keys import split_keys
from sepjax.nn.norm import LayerNorm
from sepjax.nn.snake import Snake


class SnakeFeedForward(eqx.Module):
    """Linear(dim→ff) → SNAKE → Linear(ff→dim)."""

    up: eqx.nn.Linear
    act: Snake
    down: eqx.nn.Linear

    def __init__(self, dim: int, ff_dim: int, *, key: PRNGKeyArray):
        k_up, k_down = jax.random.split(key)
        self.up = eqx.nn.Linear(dim, ff_dim, key=k_up)
        self.act = Snake(ff_dim)
        self.down = eqx.nn.Linear(ff_dim, dim, key=k_down)

    def __call__(self, x: Float[Array, "*lead seq dim"]) -> Float[Array, "*lead seq dim"]:
        h = self.act(project(x, self.up.weight) + self.up.bias)
        return project(h, self.down.weight) + self.down.bias


class TransformerBlock(eqx.Module):
    """x + γ₁·Attn(LN(x)), then x + γ₂·FF(LN(x)); γ initialised to `layer_scale_init`."""

    norm_attn: LayerNorm
    attn: SelfAttention
    norm_ff: LayerNorm
    ff: SnakeFeedForward
    scale_attn: Float[Array, " dim"]
    scale_ff: Float[Array, " dim"]
    dropout: eqx.nn.Dropout

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, *, dropout: float = 0.0,
        layer_scale_init: float = 1e-4, attention_impl: AttentionImpl = "auto",
        key: PRNGKeyArray,
    ):
        k_attn, k_ff = jax.random.split(key)
        self.norm_attn = LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, impl=attention_impl, key=k_attn)
        self.norm_ff = LayerNorm(dim)
        self.ff = SnakeFeedForward(dim, ff_dim, key=k_ff)
        self.scale_attn = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.scale_ff = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(
        self, x: Float[Array, "*lead seq dim"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "*lead seq dim"]:
        k_attn, k_ff = split_keys(key)
        attended = self.dropout(self.attn(self.norm_attn(x)), key=k_attn, inference=key is None)
        x = x + self.scale_attn.astype(x.dtype) * attended
        fed = self.dropout(self.ff(self.norm_ff(x)), key=k_ff, inference=key is None)
        return x + self.scale_ff.astype(x.dtype) * fed
