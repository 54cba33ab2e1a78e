"""Multi-head self-attention of the paper's SepReformer: pre-LN, biased projections, optional learned
relative positions on the keys, LayerScale on the output (no residual: callers add or gate it).

Scores are (q·k + q·p[i−j]) / √d, where p is a learned table over clamped offsets shared by every
block of a model; the positional term is passed to `jax.nn.dot_product_attention` as its bias.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl, resolve_attention_impl
from sepjax.nn.dense import dense
from sepjax.nn.keys import split_keys
from sepjax.nn.norm import LayerNorm


class RelativePositionKeys(eqx.Module):
    """A learned embedding per relative offset, offsets clamped to [−max_offset, max_offset−1]."""

    table: Float[Array, "offsets head_dim"]
    max_offset: int = eqx.field(static=True)

    def __init__(self, head_dim: int, max_offset: int, *, key: PRNGKeyArray):
        self.table = jax.random.normal(key, (2 * max_offset, head_dim))  # torch.nn.Embedding's N(0, 1)
        self.max_offset = max_offset

    def __call__(self, length: int) -> Float[Array, "length length head_dim"]:
        positions = jnp.arange(length)
        offsets = jnp.clip(positions[:, None] - positions[None, :], -self.max_offset, self.max_offset - 1)
        return self.table[offsets + self.max_offset]


class MultiHeadAttention(eqx.Module):
    """LayerScale · Out(Attn(LN(x))) over the `seq` axis of `(*batch, seq, dim)`."""

    norm: LayerNorm
    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    scale: Float[Array, " dim"]
    dropout: eqx.nn.Dropout
    num_heads: int = eqx.field(static=True)
    impl: AttentionImpl = eqx.field(static=True)

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "auto", key: PRNGKeyArray):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        k_qkv, k_out = jax.random.split(key)
        self.norm = LayerNorm(dim)
        self.qkv = eqx.nn.Linear(dim, 3 * dim, key=k_qkv)
        self.out = eqx.nn.Linear(dim, dim, key=k_out)
        self.scale = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)
        self.num_heads = num_heads
        self.impl = impl

    def __call__(self, x: Float[Array, "*batch seq dim"],
                 positions: Float[Array, "seq seq head_dim"] | None = None, *,
                 key: PRNGKeyArray | None = None) -> Float[Array, "*batch seq dim"]:
        *lead, seq, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        qkv = dense(self.qkv, self.norm(x)).reshape(-1, seq, 3, heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scale = 1.0 / float(head_dim) ** 0.5
        bias = None
        if positions is not None:
            bias = jnp.einsum("bthd,tsd->bhts", q, positions.astype(x.dtype)) * scale
        k_attn, k_out = split_keys(key)
        if k_attn is not None and self.dropout.p > 0:
            # Dropout on the attention weights (as the paper) needs the weights themselves.
            logits = jnp.einsum("bthd,bshd->bhts", q, k) * scale
            weights = jax.nn.softmax(logits if bias is None else logits + bias, axis=-1)
            weights = self.dropout(weights, key=k_attn)
            attended = jnp.einsum("bhts,bshd->bthd", weights, v)
        else:
            attended = jax.nn.dot_product_attention(
                q, k, v, bias=bias, implementation=resolve_attention_impl(self.impl, x.dtype))
        y = dense(self.out, attended.reshape(-1, seq, dim))
        y = self.dropout(y, key=k_out, inference=k_out is None)
        return (y * self.scale.astype(x.dtype)).reshape(*lead, seq, dim)
