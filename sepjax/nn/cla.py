"""Local block of the paper's SepReformer: convolutional local attention (CLA), then GCFN.

    CLA(x) = x + γ · Drop(Linear₂F→F(act(Norm(Linear_F→2F(DWConv_K(GLU(Linear_F→2F(LN(x)))))))))

Norm is BatchNorm in the paper (running statistics in the `eqx.nn.State`) or GroupNorm(1).
"""

from collections.abc import Hashable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.activation import Activation, ActivationKind
from sepjax.nn.dense import dense, glu
from sepjax.nn.depthwise import DepthwiseConv
from sepjax.nn.gcfn import GCFN
from sepjax.nn.keys import split_keys
from sepjax.nn.norm import LayerNorm
from sepjax.nn.stateful_norm import BATCH_AXIS, NormKind, StatefulNorm


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

    def __init__(self, dim: int, kernel: int, *, norm: NormKind = "batch", activation: ActivationKind = "gelu",
                 dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS, key: PRNGKeyArray):
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

    def __call__(self, x: Float[Array, "time dim"], state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None) -> tuple[Float[Array, "time dim"], eqx.nn.State]:
        y = dense(self.up, self.conv(glu(dense(self.gated, self.norm(x)))))
        y, state = self.mid_norm(y, state, inference=inference)
        y = self.dropout(dense(self.down, self.act(y)), key=key, inference=key is None)
        return x + y * self.scale.astype(x.dtype), state


class LocalBlock(eqx.Module):
    cla: ConvLocalAttention
    gcfn: GCFN

    def __init__(self, dim: int, kernel: int, *, norm: NormKind = "batch", activation: ActivationKind = "gelu",
                 dropout: float = 0.0, layer_scale_init: float = 1e-5,
                 axis_name: Hashable | Sequence[Hashable] = BATCH_AXIS, key: PRNGKeyArray):
        k_cla, k_gcfn = jax.random.split(key)
        self.cla = ConvLocalAttention(dim, kernel, norm=norm, activation=activation, dropout=dropout,
                                      layer_scale_init=layer_scale_init, axis_name=axis_name, key=k_cla)
        self.gcfn = GCFN(dim, dropout=dropout, layer_scale_init=layer_scale_init, key=k_gcfn)

    def __call__(self, x: Float[Array, "time dim"], state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None) -> tuple[Float[Array, "time dim"], eqx.nn.State]:
        k_cla, k_gcfn = split_keys(key)
        x, state = self.cla(x, state, inference=inference, key=k_cla)
        return self.gcfn(x, key=k_gcfn), state
