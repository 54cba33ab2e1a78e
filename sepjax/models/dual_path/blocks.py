"""The blocks of the tutorial's dual-path SepReformer: a pre-LN transformer with RoPE attention and a SNAKE
feed-forward, the dual-path block around it (Luo & Mesgarani, 2020), and the GLU split into stems.

Blocks take any leading axes (`(*lead, seq, dim)`) and treat them as independent sequences. Callers pass
all sequences at once instead of `jax.vmap`-ing a block: under vmap each projection's weight gradient is
one small matmul per sequence (K = seq) and a sum, where one call contracts over every token at once.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.attention import AttentionImpl, MultiHeadAttention
from sepjax.nn.dropout import dropout
from sepjax.nn.kernels import Kernels
from sepjax.nn.keys import split_keys
from sepjax.nn.linear import linear
from sepjax.nn.norm import LayerNorm
from sepjax.nn.rope import rotary_positions
from sepjax.nn.snake import Snake


class SnakeFeedForward(eqx.Module):
    """Linear(dim→ff) → SNAKE → Linear(ff→dim)."""

    up: eqx.nn.Linear
    act: Snake
    down: eqx.nn.Linear
    kernels: Kernels = eqx.field(static=True)

    def __init__(self, dim: int, ff_dim: int, *, kernels: Kernels = "reference", key: PRNGKeyArray):
        k_up, k_down = jax.random.split(key)
        self.up = eqx.nn.Linear(dim, ff_dim, key=k_up)
        self.act = Snake(ff_dim, kernels=kernels)
        self.down = eqx.nn.Linear(ff_dim, dim, key=k_down)
        self.kernels = kernels

    def __call__(self, x: Float[Array, "*lead seq dim"]) -> Float[Array, "*lead seq dim"]:
        return linear(self.down, self.act(linear(self.up, x, kernels=self.kernels)), kernels=self.kernels)


class TransformerBlock(eqx.Module):
    """x + γ₁·Drop(Attn(LN(x))), then x + γ₂·Drop(FF(LN(x))); γ initialised to `layer_scale_init`."""

    norm_attn: LayerNorm
    attn: MultiHeadAttention
    norm_ff: LayerNorm
    ff: SnakeFeedForward
    scale_attn: Float[Array, " dim"]
    scale_ff: Float[Array, " dim"]
    dropout: eqx.nn.Dropout

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-4,
        attention_impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray,
    ):
        k_attn, k_ff = jax.random.split(key)
        self.norm_attn = LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, use_bias=False, impl=attention_impl, kernels=kernels,
                                       key=k_attn)
        self.norm_ff = LayerNorm(dim)
        self.ff = SnakeFeedForward(dim, ff_dim, kernels=kernels, key=k_ff)
        self.scale_attn = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.scale_ff = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x: Float[Array, "*lead seq dim"], *, inference: bool, key: PRNGKeyArray | None = None
                 ) -> Float[Array, "*lead seq dim"]:
        k_attn, k_ff = split_keys(key)
        attended = self.attn(self.norm_attn(x), positions=rotary_positions)
        x = x + self.scale_attn.astype(x.dtype) * dropout(attended, self.dropout.p, key=k_attn, inference=inference)
        fed = dropout(self.ff(self.norm_ff(x)), self.dropout.p, key=k_ff, inference=inference)
        return x + self.scale_ff.astype(x.dtype) * fed


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
        layer_scale_init: float = 1e-4, attention_impl: AttentionImpl = "xla", kernels: Kernels = "reference",
        key: PRNGKeyArray,
    ):
        k_intra, k_inter = jax.random.split(key)
        kwargs = dict(dropout=dropout, layer_scale_init=layer_scale_init, attention_impl=attention_impl,
                      kernels=kernels)
        self.intra = TransformerBlock(dim, num_heads, ff_dim, key=k_intra, **kwargs)
        self.inter = TransformerBlock(dim, num_heads, ff_dim, key=k_inter, **kwargs)
        self.chunk_size = chunk_size

    def __call__(self, x: Float[Array, "*lead frames dim"], *, inference: bool, key: PRNGKeyArray | None = None
                 ) -> Float[Array, "*lead frames dim"]:
        *lead, frames, dim = x.shape
        chunks = pad_to_multiple(x, self.chunk_size).reshape(*lead, -1, self.chunk_size, dim)
        k_intra, k_inter = split_keys(key)
        chunks = self.intra(chunks, inference=inference, key=k_intra)
        across = self.inter(jnp.swapaxes(chunks, -3, -2), inference=inference, key=k_inter)
        return jnp.swapaxes(across, -3, -2).reshape(*lead, -1, dim)[..., :frames, :]


class GLUSplit(eqx.Module):
    """σ(g)⊙v with [g, v] = W₁h, then W₂ expands to `num_stems` streams: (frames, dim) → (stems, frames, dim)."""

    gate: eqx.nn.Linear
    expand: eqx.nn.Linear
    num_stems: int = eqx.field(static=True)

    def __init__(self, dim: int, num_stems: int, *, key: PRNGKeyArray):
        k_gate, k_expand = jax.random.split(key)
        self.gate = eqx.nn.Linear(dim, 2 * dim, key=k_gate)
        self.expand = eqx.nn.Linear(dim, dim * num_stems, key=k_expand)
        self.num_stems = num_stems

    def __call__(self, h: Float[Array, "frames dim"]) -> Float[Array, "stems frames dim"]:
        frames, dim = h.shape
        gate, value = linear(self.gate, h).reshape(frames, 2, dim).transpose(1, 0, 2)
        streams = linear(self.expand, jax.nn.sigmoid(gate) * value)
        return streams.reshape(frames, self.num_stems, dim).transpose(1, 0, 2)
