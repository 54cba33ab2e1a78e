"""The paper's SepReformer layers against independent references: eqx/NumPy convs, norms, attention."""

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sepjax.models.sepreformer.blocks import GCFN, EfficientGlobalAttention, PreNormAttention, RelativePositionKeys
from sepjax.models.sepreformer.model import nearest_resize
from sepjax.nn import depthwise
from sepjax.nn.attention import MultiHeadAttention
from sepjax.nn.depthwise import DepthwiseConv
from sepjax.nn.norm import GroupNorm1


@pytest.mark.parametrize(("kernel", "stride", "length"),
                         [(3, 1, 50), (65, 1, 200), (65, 1, 40), (9, 1, 128), (5, 2, 64), (5, 2, 63), (17, 2, 63)])
def test_depthwise_conv_matches_eqx_grouped_conv(kernel, stride, length):
    conv = DepthwiseConv(8, kernel, stride=stride, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (length, 8))
    reference = conv.conv(x.T).T  # eqx.nn.Conv1d(groups=8), channels first
    out = conv(x)
    assert out.shape == reference.shape == ((length - 1) // stride + 1, 8)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    # The hand-written backward against autodiff of eqx's grouped conv, under a batch vmap (shared weights).
    xs = jnp.stack([x, -2 * x])
    cotangent = jax.random.normal(jax.random.PRNGKey(2), (2, *reference.shape))

    def loss(c, xs, transposed):
        outs = jax.vmap(lambda v: c.conv(v.T).T if transposed else c(v))(xs)
        return jnp.sum(outs * cotangent)

    ours = jax.grad(lambda c, v: loss(c, v, False), argnums=(0, 1))(conv, xs)
    theirs = jax.grad(lambda c, v: loss(c, v, True), argnums=(0, 1))(conv, xs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kernel", "length"), [(65, 200), (65, 64), (65, 30), (9, 1000), (129, 300)])
def test_blocked_tap_gradient_is_the_correlation_of_input_and_gradient(kernel, length):
    """The long kernels' taps gradient, Σ_t padded[i + t, c] · grad[t, c], against float64 NumPy, within the
    float32 bound on a sum of `length` products: |error| ≤ length · ε · Σ_t |padded[i + t, c] · grad[t, c]|."""
    channels = 6
    rng = np.random.default_rng(kernel + length)
    padded = rng.standard_normal((length + kernel - 1, channels)).astype(np.float32)
    grad = rng.standard_normal((length, channels)).astype(np.float32)
    products = np.stack([padded[i : i + length].astype(np.float64) * grad for i in range(kernel)], axis=1)
    expected, magnitude = products.sum(axis=0).T, np.abs(products).sum(axis=0).T  # (channels, kernel)
    got = np.asarray(depthwise._blocked_tap_gradient(jnp.asarray(padded), jnp.asarray(grad), kernel))
    assert got.shape == (channels, kernel)
    assert np.all(np.abs(got - expected) <= length * np.finfo(np.float32).eps * magnitude)


def residual_sizes(f, x) -> list[int]:
    """Sizes of the arrays the backward pass of `f` keeps (the leaves of its VJP closure)."""
    return [leaf.size for leaf in jax.tree.leaves(jax.vjp(f, x)[1])]


def test_backward_keeps_one_copy_of_the_input_not_one_per_tap():
    time, channels = 1000, 8
    x = jax.random.normal(jax.random.PRNGKey(0), (time, channels))
    conv = DepthwiseConv(channels, 65, key=jax.random.PRNGKey(1))
    assert sum(residual_sizes(conv, x)) == time * channels + channels * 65
    gcfn = GCFN(channels, key=jax.random.PRNGKey(2))
    per_frame = sum(s for s in residual_sizes(partial(gcfn, inference=True), x) if s >= time) / time
    assert per_frame == channels * (1 + 6)  # the input and the 6F expansion; norm, conv and GLU are recomputed


def test_group_norm_matches_eqx():
    norm = GroupNorm1(6, eps=1e-8)
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, (jnp.arange(1.0, 7.0), jnp.linspace(-1, 1, 6)))
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 40, 6)) * 3 + 1
    reference = eqx.nn.GroupNorm(1, 6, eps=1e-8)
    reference = eqx.tree_at(lambda n: (n.weight, n.bias), reference, (norm.weight, norm.bias))
    for s in range(3):
        np.testing.assert_allclose(norm(x)[s], reference(x[s].T).T, atol=1e-5)


def test_relative_position_keys_clamp_offsets():
    keys = RelativePositionKeys(4, max_offset=3, key=jax.random.PRNGKey(0))
    p = np.asarray(keys(8))
    table = np.asarray(keys.table)
    assert p.shape == (8, 8, 4)
    np.testing.assert_array_equal(p[5, 1], table[2 + 3])  # offset 4 clamps to max_offset − 1 = 2
    np.testing.assert_array_equal(p[2, 2], table[3])  # offset 0
    np.testing.assert_array_equal(p[0, 7], table[0])  # offset −7 clamps to −3


def _attention_reference(mha, x, positions):
    """Scores (q·k + q·p[i,j])/√d, softmax, ·v, then Out and LayerScale, all in NumPy."""
    x = np.asarray(x, np.float64)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    normed = (x - mean) / np.sqrt(var + 1e-5)
    attention = mha.attention
    w, b = np.asarray(attention.qkv.weight, np.float64), np.asarray(attention.qkv.bias, np.float64)
    qkv = normed @ w.T + b
    seq, dim = x.shape
    heads = attention.num_heads
    d = dim // heads
    q, k, v = (qkv[:, i * dim:(i + 1) * dim].reshape(seq, heads, d) for i in range(3))
    scores = np.einsum("thd,shd->hts", q, k)
    if positions is not None:
        scores = scores + np.einsum("thd,tsd->hts", q, np.asarray(positions, np.float64))
    scores = scores / np.sqrt(d)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("hts,shd->thd", weights, v).reshape(seq, dim)
    out = out @ np.asarray(attention.out.weight, np.float64).T + np.asarray(attention.out.bias, np.float64)
    return out * np.asarray(mha.scale, np.float64)


@pytest.mark.parametrize("with_positions", [True, False])
def test_attention_with_relative_positions_matches_numpy(with_positions):
    mha = PreNormAttention(16, 4, layer_scale_init=0.5, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 16))
    positions = RelativePositionKeys(4, 5, key=jax.random.PRNGKey(2))(10) if with_positions else None
    np.testing.assert_allclose(mha(x, positions, inference=True), _attention_reference(mha, x, positions), atol=1e-4)
    batched = mha(jnp.stack([x, 2 * x]), positions, inference=True)  # leading batch axes attend independently
    np.testing.assert_allclose(batched[1], mha(2 * x, positions, inference=True), atol=1e-5)


def test_attention_dropout_only_in_training_mode():
    mha = PreNormAttention(16, 4, dropout=0.5, layer_scale_init=1.0, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 16))
    k3, k4 = jax.random.PRNGKey(3), jax.random.PRNGKey(4)
    np.testing.assert_array_equal(mha(x, inference=True, key=k3), mha(x, inference=True))  # a key alone: no dropout
    a, b = mha(x, inference=False, key=k3), mha(x, inference=False, key=k4)
    assert not np.allclose(a, b)
    # Dropout of the attention weights keeps each head's output a mixture of its values: zeroing weights
    # changes which ones, so turning it off in the MHA (not only on the output) changes the result.
    same_weights = MultiHeadAttention(16, 4, dropout=0.0, key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(same_weights.qkv.weight, mha.attention.qkv.weight)
    no_weight_dropout = eqx.tree_at(lambda m: m.attention, mha, same_weights)
    assert not np.allclose(mha(x, inference=False, key=k3), no_weight_dropout(x, inference=False, key=k3))
    with pytest.raises(RuntimeError, match="requires a key"):
        mha(x, inference=False)


def test_ega_pools_to_the_bottleneck_and_gates_the_upsampled_attention():
    ega = EfficientGlobalAttention(8, 2, layer_scale_init=1.0, key=jax.random.PRNGKey(0))
    positions = RelativePositionKeys(4, 16, key=jax.random.PRNGKey(1))(4)
    x = jax.random.normal(jax.random.PRNGKey(2), (16, 8))
    out = ega(x, positions, inference=True)
    pooled = x.reshape(4, 4, 8).mean(1)
    attended = np.repeat(np.asarray(ega.attn(pooled, positions, inference=True)), 4, axis=0)
    gate = jax.nn.sigmoid(ega.gate_norm(x) @ ega.gate.weight.T + ega.gate.bias)
    np.testing.assert_allclose(out, x + gate * attended, atol=1e-5)
    with pytest.raises(ValueError, match="not a multiple of the bottleneck length"):
        ega(x[:15], positions, inference=True)


def test_gcfn_is_the_identity_at_zero_layer_scale_and_keeps_shape():
    gcfn = GCFN(8, layer_scale_init=0.0, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (12, 8))
    np.testing.assert_array_equal(gcfn(x, inference=True), x)
    gcfn = GCFN(8, layer_scale_init=1.0, key=jax.random.PRNGKey(0))
    y = gcfn(x, inference=True)
    assert y.shape == x.shape and not np.allclose(y, x)


@pytest.mark.parametrize(("source", "target"), [(4, 16), (5, 17), (16, 16), (7, 3)])
def test_nearest_resize_matches_torch_nearest_indexing(source, target):
    x = jnp.arange(source, dtype=jnp.float32)[:, None] * jnp.ones((1, 2))
    expected = np.floor(np.arange(target) * (source / target)).astype(int)  # torch's legacy 'nearest'
    np.testing.assert_array_equal(nearest_resize(x, target)[:, 0], expected)
