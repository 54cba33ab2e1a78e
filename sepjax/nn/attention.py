"""Multi-head self-attention with RoPE: `jax.nn.dot_product_attention`, or sepjax's head-major kernel on CPU."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.dense import project
from sepjax.nn.head_major_attention import head_major_attention
from sepjax.nn.rope import apply_rope

AttentionImpl = Literal["auto", "xla", "cudnn", "head_major"]


def resolve_attention_impl(impl: AttentionImpl, dtype: jnp.dtype) -> Literal["xla", "cudnn"]:
    """`jax.nn.dot_product_attention`'s implementation: `auto` picks cuDNN's fused kernel on a GPU
    with a half-precision dtype, XLA elsewhere."""
    if impl == "head_major":
        raise ValueError("attention_impl='head_major' has no attention bias; use 'auto', 'xla' or 'cudnn'")
    if impl != "auto":
        return impl
    on_gpu = jax.default_backend() == "gpu"
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if on_gpu and half else "xla"


def uses_head_major(impl: AttentionImpl) -> bool:
    """`auto` on the CPU runs `head_major_attention` (about 2x faster to train there)."""
    return impl == "head_major" or (impl == "auto" and jax.default_backend() == "cpu")


class SelfAttention(eqx.Module):
    """All heads in one fused projection; q and k rotated by RoPE when `rotary`."""

    qkv: eqx.nn.Linear
    out: eqx.nn.Linear
    num_heads: int = eqx.field(static=True)
    rotary: bool = eqx.field(static=True)
    impl: AttentionImpl = eqx.field(static=True)

    def __init__(
        self, dim: int, num_heads: int, *, rotary: bool = True, impl: AttentionImpl = "auto",
        key: PRNGKeyArray,
    ):
        k_qkv, k_out = jax.random.split(key)
        self.qkv = eqx.nn.Linear(dim, 3 * dim, use_bias=False, key=k_qkv)
        self.out = eqx.nn.Linear(dim, dim, use_bias=False, key=k_out)
        self.num_heads = num_heads
        self.rotary = rotary
        self.impl = impl

    def __check_init__(self):
        dim = self.out.in_features
        if dim % self.num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {self.num_heads}")

    def __call__(self, x: Float[Array, "*lead seq dim"]) -> Float[Array, "*lead seq dim"]:
        *lead, seq, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = project(x, self.qkv.weight).reshape(*lead, seq, 3, self.num_heads, head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        if self.rotary:
            q, k = apply_rope(q), apply_rope(k)
        if uses_head_major(self.impl):
            attended = head_major_attention(q, k, v)
        else:
            # dot_product_attention takes at most one batch axis: fold the leading axes into it.
            flat = [a.reshape(-1, seq, self.num_heads, head_dim) for a in (q, k, v)]
            attended = jax.nn.dot_product_attention(
                *flat, implementation=resolve_attention_impl(self.impl, x.dtype)
            ).reshape(*lead, seq, self.num_heads, head_dim)
        return project(attended.reshape(*lead, seq, dim), self.out.weight)
