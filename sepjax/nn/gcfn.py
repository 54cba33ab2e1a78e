"""Gated convolutional feed-forward network (GCFN) of the paper's SepReformer.

    x + γ · Drop(Linear₃F→F(Drop(GLU(DWConv₃(Linear_F→6F(LN(x)))))))
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.nn.dense import dense, glu
from sepjax.nn.depthwise import DepthwiseConv
from sepjax.nn.keys import split_keys
from sepjax.nn.norm import LayerNorm


class GCFN(eqx.Module):
    norm: LayerNorm
    up: eqx.nn.Linear
    conv: DepthwiseConv
    down: eqx.nn.Linear
    scale: Float[Array, " dim"]
    dropout: eqx.nn.Dropout

    def __init__(self, dim: int, *, dropout: float = 0.0, layer_scale_init: float = 1e-5, key: PRNGKeyArray):
        k_up, k_conv, k_down = jax.random.split(key, 3)
        self.norm = LayerNorm(dim)
        self.up = eqx.nn.Linear(dim, 6 * dim, key=k_up)
        self.conv = DepthwiseConv(6 * dim, 3, key=k_conv)
        self.down = eqx.nn.Linear(3 * dim, dim, key=k_down)
        self.scale = jnp.full(dim, layer_scale_init, dtype=jnp.float32)
        self.dropout = eqx.nn.Dropout(dropout)

    def __call__(self, x: Float[Array, "time dim"], *, key: PRNGKeyArray | None = None) -> Float[Array, "time dim"]:
        k_mid, k_out = split_keys(key)
        # Recomputing the cheap kernel-3 conv in the backward keeps one 6F-wide activation instead of two.
        y = jax.checkpoint(lambda conv, h: glu(conv(h)))(self.conv, dense(self.up, self.norm(x)))
        y = self.dropout(y, key=k_mid, inference=k_mid is None)
        y = self.dropout(dense(self.down, y), key=k_out, inference=k_out is None)
        return x + y * self.scale.astype(x.dtype)
