"""The blocks of the paper's SepReformer: global (EGA + GCFN), local (CLA + GCFN) and cross-speaker blocks.

    EGA(x)  = x + σ(Linear(LN(x))) ⊙ up(MHSA(pool(x)))                      attention at the bottleneck rate
    CLA(x)  = x + γ·Drop(Linear₂F→F(act(Norm(Linear_F→2F(DWConv_K(GLU(Linear_F→2F(LN(x)))))))))
    GCFN(x) = x + γ·Drop(Linear₃F→F(Drop(GLU(DWConv₃(Linear_F→6F(LN(x)))))))
    CS(x)   = GCFN per stem of (x + MHSA over the stems at each time step)

MHSA is pre-LN multi-head self-attention with biased projections and LayerScale on its output; EGA's adds
learned relative-position keys: scores (q·k + q·p[i−j]) / √d, with p a table over clamped offsets shared by
every block of a model. Norm is BatchNorm (running statistics in the `eqx.nn.State`) or GroupNorm(1).
"""

from collections.abc import Hashable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.activation import Activation, ActivationKind, glu
from sepjax.nn.attention import AttentionImpl, MultiHeadAttention
from sepjax.nn.depthwise import DepthwiseConv
from sepjax.nn.dropout import dropout
from sepjax.nn.kernels import Kernels
from sepjax.nn.keys import split_keys
from sepjax.nn.linear import linear
from sepjax.nn.norm import LayerNorm
from sepjax.nn.remat import recomputed
from sepjax.nn.stateful_norm import BATCH_AXIS, NormKind, StatefulNorm


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


def relative_positions(keys: Float[Array, "seq seq head_dim"]):
    """`MultiHeadAttention`'s positional scheme for learned relative keys: the score bias q·p[i−j] / √d.

    The bias is one matmul per query position t, (batch·heads, d) × (d, seq), written with t as the batch axis
    and (batch, heads) as the rows, so that its (t, batch, heads, seq) product reaches the scores' (batch,
    heads, t, seq) layout by moving whole rows of `seq` scores. Written as an einsum, XLA:CPU lays the product
    out as (t, seq, batch·heads) and transposes it element by element (docs/performance.md).
    """

    def scheme(q, k):
        by_position = jnp.swapaxes(q, 0, 1) * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)  # (t, batch, heads, d)
        bias = lax.dot_general(by_position, keys.astype(q.dtype), (((3,), (2,)), ((0,), (0,))))
        return q, k, jnp.transpose(bias, (1, 2, 0, 3))  # (batch, heads, t, seq)

    return scheme


class PreNormAttention(eqx.Module):
    """LayerScale · Drop(MHSA(LN(x))) over the `seq` axis of `(*batch, seq, dim)` (no residual: callers add or
    gate it)."""

    norm: LayerNorm
    attention: MultiHeadAttention
    scale: Float[Array, " dim"]
    dropout: eqx.nn.Dropout

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray):
        self.norm = LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, num_heads, dropout=dropout, impl=impl, kernels=kernels, key=key)
        self.scale = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x: Float[Array, "*batch seq dim"], relative_keys: Float[Array, "seq seq head_dim"] | None
                 = None, *, inference: bool, key: PRNGKeyArray | None = None) -> Float[Array, "*batch seq dim"]:
        k_attn, k_out = split_keys(key)
        positions = None if relative_keys is None else relative_positions(relative_keys)
        y = self.attention(self.norm(x), positions=positions, inference=inference, key=k_attn)
        return dropout(y, self.dropout.p, key=k_out, inference=inference) * self.scale.astype(x.dtype)


class GCFN(eqx.Module):
    """Gated convolutional feed-forward network."""

    norm: LayerNorm
    up: eqx.nn.Linear
    conv: DepthwiseConv
    down: eqx.nn.Linear
    scale: Float[Array, " dim"]
    dropout: eqx.nn.Dropout
    kernels: Kernels = eqx.field(static=True)

    def __init__(self, dim: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 kernels: Kernels = "reference", key: PRNGKeyArray):
        k_up, k_conv, k_down = jax.random.split(key, 3)
        self.norm = LayerNorm(dim)
        self.up = eqx.nn.Linear(dim, 6 * dim, key=k_up)
        self.conv = DepthwiseConv(6 * dim, 3, key=k_conv)
        self.down = eqx.nn.Linear(3 * dim, dim, key=k_down)
        self.scale = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)
        self.kernels = kernels

    def __call__(self, x: Float[Array, "time dim"], *, inference: bool, key: PRNGKeyArray | None = None
                 ) -> Float[Array, "time dim"]:
        k_mid, k_out = split_keys(key)
        # Recomputing the cheap kernel-3 conv in the backward keeps one 6F-wide activation instead of two.
        y = recomputed(lambda conv, h: glu(conv(h)))(self.conv, linear(self.up, self.norm(x), kernels=self.kernels))
        y = dropout(y, self.dropout.p, key=k_mid, inference=inference)
        y = dropout(linear(self.down, y, kernels=self.kernels), self.dropout.p, key=k_out, inference=inference)
        return x + y * self.scale.astype(x.dtype)


class EfficientGlobalAttention(eqx.Module):
    """Attention at the bottleneck frame rate whatever the stage's own rate: average-pool to the bottleneck
    length, MHSA with relative-position keys, nearest upsampling back, and a sigmoid gate from the input."""

    attn: PreNormAttention
    gate_norm: LayerNorm
    gate: eqx.nn.Linear
    kernels: Kernels = eqx.field(static=True)

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray):
        k_attn, k_gate = jax.random.split(key)
        self.attn = PreNormAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                     impl=impl, kernels=kernels, key=k_attn)
        self.gate_norm = LayerNorm(dim)
        self.gate = eqx.nn.Linear(dim, dim, key=k_gate)
        self.kernels = kernels

    def __call__(self, x: Float[Array, "time dim"], positions: Float[Array, "pooled pooled head_dim"], *,
                 inference: bool, key: PRNGKeyArray | None = None) -> Float[Array, "time dim"]:
        time, dim = x.shape
        pooled_length = positions.shape[0]
        if time % pooled_length:
            raise ValueError(f"stage length {time} is not a multiple of the bottleneck length {pooled_length}")
        span = time // pooled_length
        pooled = jnp.mean(x.reshape(pooled_length, span, dim), axis=1)
        attended = jnp.repeat(self.attn(pooled, positions, inference=inference, key=key), span, axis=0)
        return x + jax.nn.sigmoid(linear(self.gate, self.gate_norm(x), kernels=self.kernels)) * attended


class GlobalBlock(eqx.Module):
    ega: EfficientGlobalAttention
    gcfn: GCFN

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray):
        k_ega, k_gcfn = jax.random.split(key)
        self.ega = EfficientGlobalAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                            impl=impl, kernels=kernels, key=k_ega)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, kernels=kernels, key=k_gcfn)

    def __call__(self, x: Float[Array, "time dim"], positions: Float[Array, "pooled pooled head_dim"], *,
                 inference: bool, key: PRNGKeyArray | None = None) -> Float[Array, "time dim"]:
        k_ega, k_gcfn = split_keys(key)
        x = self.ega(x, positions, inference=inference, key=k_ega)
        return self.gcfn(x, inference=inference, key=k_gcfn)


class ConvLocalAttention(eqx.Module):
    norm: LayerNorm
    gated: eqx.nn.Linear
    conv: DepthwiseConv
    up: eqx.nn.Linear
    mid_norm: StatefulNorm
    act: Activation
    down: eqx.nn.Linear
    scale: Float[Array, " dim"]
    dropout: eqx.nn.Dropout
    kernels: Kernels = eqx.field(static=True)

    def __init__(self, dim: int, kernel: int, *, norm: NormKind = "batch", activation: ActivationKind = "gelu",
                 dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS, kernels: Kernels = "reference",
                 key: PRNGKeyArray):
        k_gated, k_conv, k_up, k_down = jax.random.split(key, 4)
        self.norm = LayerNorm(dim)
        self.gated = eqx.nn.Linear(dim, 2 * dim, key=k_gated)
        self.conv = DepthwiseConv(dim, kernel, key=k_conv)
        self.up = eqx.nn.Linear(dim, 2 * dim, key=k_up)
        self.mid_norm = StatefulNorm(2 * dim, norm, axis_name=axis_name)
        self.act = Activation(2 * dim, activation)
        self.down = eqx.nn.Linear(2 * dim, dim, key=k_down)
        self.scale = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)
        self.kernels = kernels

    def __call__(self, x: Float[Array, "time dim"], state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None) -> tuple[Float[Array, "time dim"], eqx.nn.State]:
        y = glu(linear(self.gated, self.norm(x), kernels=self.kernels))
        y = linear(self.up, self.conv(y), kernels=self.kernels)
        y, state = self.mid_norm(y, state, inference=inference)
        y = dropout(linear(self.down, self.act(y), kernels=self.kernels), self.dropout.p, key=key,
                    inference=inference)
        return x + y * self.scale.astype(x.dtype), state


class LocalBlock(eqx.Module):
    cla: ConvLocalAttention
    gcfn: GCFN

    def __init__(self, dim: int, kernel: int, *, norm: NormKind = "batch", activation: ActivationKind = "gelu",
                 dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS, kernels: Kernels = "reference",
                 key: PRNGKeyArray):
        k_cla, k_gcfn = jax.random.split(key)
        self.cla = ConvLocalAttention(dim, kernel, norm=norm, activation=activation, dropout=dropout,
                                      layer_scale_init=layer_scale_init, axis_name=axis_name, kernels=kernels,
                                      key=k_cla)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, kernels=kernels, key=k_gcfn)

    def __call__(self, x: Float[Array, "time dim"], state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None) -> tuple[Float[Array, "time dim"], eqx.nn.State]:
        k_cla, k_gcfn = split_keys(key)
        x, state = self.cla(x, state, inference=inference, key=k_cla)
        return self.gcfn(x, inference=inference, key=k_gcfn), state


class CrossSpeakerBlock(eqx.Module):
    """At every time step the stems attend to each other (no positional encoding), then a per-stem GCFN: the
    decoder's shared-weight streams exchange what each one holds."""

    attn: PreNormAttention
    gcfn: GCFN

    def __init__(self, dim: int, num_heads: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 impl: AttentionImpl = "xla", kernels: Kernels = "reference", key: PRNGKeyArray):
        k_attn, k_gcfn = jax.random.split(key)
        self.attn = PreNormAttention(dim, num_heads, dropout=dropout, layer_scale_init=layer_scale_init,
                                     impl=impl, kernels=kernels, key=k_attn)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, kernels=kernels, key=k_gcfn)

    def __call__(self, x: Float[Array, "stems time dim"], *, inference: bool, key: PRNGKeyArray | None = None
                 ) -> Float[Array, "stems time dim"]:
        k_attn, k_gcfn = split_keys(key)
        per_step = jnp.swapaxes(x, 0, 1)  # (time, stems, dim): each time step is one attention batch
        x = x + jnp.swapaxes(self.attn(per_step, inference=inference, key=k_attn), 0, 1)
        keys = None if k_gcfn is None else jax.random.split(k_gcfn, x.shape[0])
        return jax.vmap(lambda s, k: self.gcfn(s, inference=inference, key=k))(x, keys)
