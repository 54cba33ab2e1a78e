"""Softmax attention in head-major layout with a hand-written backward, for XLA:CPU.

`jax.nn.dot_product_attention(implementation="xla")` works on (seq, heads, head_dim) and its autodiff
backward contracts over the query axis of the probabilities, a layout XLA:CPU runs as slow strided
batched matmuls. Here each head's (seq, head_dim) block is contiguous, the backward uses
FlashAttention's identity rowsum(P ∘ dP) = rowsum(dO ∘ O), and the two products that contract over
queries (dV = Pᵀ dO, dK = dSᵀ Q) are computed transposed from small pre-transposed operands, so
every matmul is a plain row-major one. Scores and softmax run in float32 for any input dtype.

A score bias (the paper SepReformer's relative-position term) adds to the scores, and its gradient is the
scores' gradient. Dropout of the weights takes its mask from `sepjax.nn.dropout` and recomputes it in the
backward from the key, so neither the mask nor the autodiff softmax backward's reduction over keys is paid for.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from sepjax.nn.dropout import dropout
from sepjax.nn.kernels.projection import transposed_product


def _probabilities(q_scaled: Float[Array, "*lead h t d"], k: Float[Array, "*lead h s d"],
                   bias: Float[Array, "*lead h t s"] | None) -> Float[Array, "*lead h t s"]:
    scores = jnp.einsum("...htd,...hsd->...hts", q_scaled, k, preferred_element_type=jnp.float32)
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    weights = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
    return weights * (1 / jnp.sum(weights, axis=-1, keepdims=True))


def _scaled(q: Float[Array, "*lead h t d"]) -> Float[Array, "*lead h t d"]:
    # 1/√d goes on q, not on the (t, s) scores: XLA:CPU's dot fusions take a scalar operand as a
    # materialised scores-sized broadcast.
    return q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)


def _dropped(probs: Array, key: Array | None, rate: float) -> Array:
    """The attention weights after dropout: the mask is a function of `key` and the shape, so the backward
    recomputes it instead of storing one flag per score."""
    return dropout(probs, rate, key=key, inference=key is None)


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _attend(q: Float[Array, "*lead h t d"], k: Float[Array, "*lead h s d"], v: Float[Array, "*lead h s d"],
            bias: Float[Array, "*lead h t s"] | None, key: Array | None, rate: float) -> Float[Array, "*lead h t d"]:
    return _forward(q, k, v, bias, key, rate)[0]


def _forward(q, k, v, bias, key, rate):
    q_scaled = _scaled(q)
    probs = _probabilities(q_scaled, k, bias)
    out = jnp.einsum("...hts,...hsd->...htd", _dropped(probs, key, rate).astype(v.dtype), v)
    bias_like = None if bias is None else jnp.zeros((0,), bias.dtype)  # the bias's dtype, not its values
    return out, (q_scaled, k, v, bias_like, key, probs, out)


def _backward(rate, residuals, d_out):
    q_scaled, k, v, bias_like, key, probs, out = residuals
    d_out = d_out.astype(v.dtype)
    # Dropout scales the weights by mask / keep, so the weights' gradient is the dropped weights' times the same.
    d_probs = _dropped(jnp.einsum("...htd,...hsd->...hts", d_out, v, preferred_element_type=jnp.float32), key, rate)
    # rowsum(P ∘ dP) = rowsum(dO ∘ O): the dropped weights' mask and scale appear on both sides.
    row_dot = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_scores = (probs * (d_probs - row_dot)).astype(q_scaled.dtype)  # w.r.t. the scores of q_scaled
    d_q = _scaled(jnp.einsum("...hts,...hsd->...htd", d_scores, k))
    d_k = transposed_product(q_scaled, d_scores)
    d_v = transposed_product(d_out, _dropped(probs, key, rate).astype(v.dtype))
    d_bias = None if bias_like is None else d_scores.astype(bias_like.dtype)
    return d_q, d_k, d_v, d_bias, None


_attend.defvjp(_forward, _backward)


def head_major_attention(
    q: Float[Array, "*lead seq heads head_dim"], k: Float[Array, "*lead kv_seq heads head_dim"],
    v: Float[Array, "*lead kv_seq heads head_dim"], bias: Float[Array, "*lead heads seq kv_seq"] | None = None,
    *, dropout: float = 0.0, key: Array | None = None,
) -> Float[Array, "*lead seq heads head_dim"]:
    """softmax(q kᵀ / √head_dim + bias) v per head, the weights dropped at rate `dropout` when a key is given
    (`sepjax.nn.dropout`'s mask over the weights' (*lead, heads, seq, kv_seq) layout); the layout of
    `jax.nn.dot_product_attention`."""
    to_heads = lambda x: jnp.swapaxes(x, -3, -2)  # noqa: E731
    return to_heads(_attend(to_heads(q), to_heads(k), to_heads(v), bias, key, float(dropout)))
