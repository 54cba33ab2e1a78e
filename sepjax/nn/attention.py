"""Multi-head self-attention, the one attention module of both model families.

All heads share one fused q/k/v projection. A positional scheme plugs in as `positions(q, k)`, the way
`eqx.nn.MultiheadAttention` takes `process_heads`: it returns the (rotated) queries and keys and an optional
score bias. The tutorial's transformer rotates by RoPE (`rope.rotary_positions`), the paper's global
attention adds learned relative keys, its cross-speaker attention uses none.
"""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.dropout import dropout
from sepjax.nn.kernels import Kernels
from sepjax.nn.kernels.attention import head_major_attention
from sepjax.nn.linear import linear

AttentionImpl = Literal["xla", "cudnn"]
"""`jax.nn.dot_product_attention`'s implementation: 'cudnn' is cuDNN's fused kernel (GPU, bfloat16/float16)."""

Heads = Float[Array, "batch seq heads head_dim"]
ScoreBias = Float[Array, "batch heads seq seq"]
Positions = Callable[[Heads, Heads], tuple[Heads, Heads, ScoreBias | None]]
"""(q, k) → (q, k, bias added to the scaled scores, or None)."""


class MultiHeadAttention(eqx.Module):
    """softmax(q kᵀ/√d + bias) v per head over the `seq` axis of `(*lead, seq, dim)`, then the output projection.

    `dropout` drops attention weights in training mode (`inference=False`, with a key). With
    `kernels="cpu_fast"` the scores, bias and dropout run in `kernels.attention.head_major_attention`.
    """

    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    num_heads: int = eqx.field(static=True)
    dropout: float = eqx.field(static=True)
    impl: AttentionImpl = eqx.field(static=True)
    kernels: Kernels = eqx.field(static=True)

    def __init__(self, dim: int, num_heads: int, *, use_bias: bool = True, dropout: float = 0.0,
                 impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        k_qkv, k_out = jax.random.split(key)
        self.qkv = eqx.nn.Linear(dim, 3 * dim, use_bias=use_bias, key=k_qkv)
        self.out = eqx.nn.Linear(dim, dim, use_bias=use_bias, key=k_out)
        self.num_heads = num_heads
        self.dropout = dropout
        self.impl = impl
        self.kernels = kernels

    def __call__(self, x: Float[Array, "*lead seq dim"], *, positions: Positions | None = None,
                 inference: bool = True, key: PRNGKeyArray | None = None) -> Float[Array, "*lead seq dim"]:
        *lead, seq, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        # dot_product_attention takes at most one batch axis: the leading axes fold into it.
        qkv = linear(self.qkv, x, kernels=self.kernels).reshape(-1, seq, 3, heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        bias = None
        if positions is not None:
            q, k, bias = positions(q, k)
        rate = 0.0 if inference else self.dropout
        if rate > 0 and key is None:
            raise RuntimeError("Dropout requires a key in training mode (inference=False)")
        if self.kernels == "cpu_fast":
            attended = head_major_attention(q, k, v, bias, dropout=rate, key=key if rate > 0 else None)
        elif rate > 0:
            # Dropout on the attention weights needs the weights themselves.
            logits = jnp.einsum("bthd,bshd->bhts", q, k) * (1.0 / float(head_dim) ** 0.5)
            weights = jax.nn.softmax(logits if bias is None else logits + bias, axis=-1)
            weights = dropout(weights, rate, key=key, inference=False)
            attended = jnp.einsum("bhts,bshd->bthd", weights, v)
        else:
            attended = jax.nn.dot_product_attention(q, k, v, bias=bias, implementation=self.impl)
        return linear(self.out, attended.reshape(*lead, seq, dim), kernels=self.kernels)
