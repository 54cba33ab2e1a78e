"""Layer checks against independent references: equinox's own layers, NumPy, textbook formulas."""

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sepjax.framing import count_frames, frame, overlap_add
from sepjax.models.dual_path.blocks import DualPathBlock, GLUSplit, SnakeFeedForward, TransformerBlock, pad_to_multiple
from sepjax.nn.attention import MultiHeadAttention
from sepjax.nn.conv import ConvDecoder, ConvEncoder
from sepjax.nn.norm import LayerNorm
from sepjax.nn.rope import apply_rope, rotary_positions
from sepjax.nn.snake import Snake
from sepjax.nn.stack import scan_alike, scan_blocks, stacked


def test_snake_starts_at_alpha_one_and_is_identity_plus_nonnegative():
    layer = Snake(5)
    np.testing.assert_array_equal(layer.alpha, np.ones(5))
    x = jnp.linspace(-4, 4, 40).reshape(8, 5)
    assert bool(jnp.all(layer(x) >= x - 1e-6))


def test_rope_matches_equinox_rotary_embedding(key):
    seq, heads, head_dim = 13, 3, 8
    x = jax.random.normal(key, (seq, heads, head_dim))
    reference = jax.vmap(eqx.nn.RotaryPositionalEmbedding(head_dim), in_axes=1, out_axes=1)(x)
    np.testing.assert_allclose(apply_rope(x), reference, atol=1e-5)


def test_rope_preserves_norm_and_encodes_relative_position(key):
    q = jax.random.normal(key, (1, 1, 16))
    k = jax.random.normal(jax.random.fold_in(key, 1), (1, 1, 16))
    np.testing.assert_allclose(jnp.linalg.norm(apply_rope(jnp.tile(q, (9, 1, 1))), axis=-1),
                               jnp.linalg.norm(jnp.tile(q, (9, 1, 1)), axis=-1), rtol=1e-5)
    rq = apply_rope(jnp.tile(q, (12, 1, 1)))[:, 0]
    rk = apply_rope(jnp.tile(k, (12, 1, 1)))[:, 0]
    # <R_m q, R_n k> depends only on m − n.
    np.testing.assert_allclose(rq[5] @ rk[2], rq[9] @ rk[6], rtol=1e-4)


@pytest.mark.parametrize("kernels", ["reference", "cpu_fast"])
def test_attention_matches_per_head_numpy_softmax(key, kernels):
    attn = MultiHeadAttention(16, 4, use_bias=False, kernels=kernels, key=key)
    x = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (7, 16)))
    wq, wk, wv = np.split(np.asarray(attn.qkv.weight), 3, axis=0)
    heads = []
    for h in range(4):
        sl = slice(4 * h, 4 * h + 4)
        q, k, v = x @ wq[sl].T, x @ wk[sl].T, x @ wv[sl].T
        logits = q @ k.T / 2.0
        w = np.exp(logits - logits.max(-1, keepdims=True))
        heads.append((w / w.sum(-1, keepdims=True)) @ v)
    expected = np.concatenate(heads, axis=-1) @ np.asarray(attn.out.weight).T
    np.testing.assert_allclose(attn(jnp.asarray(x)), expected, atol=1e-5)


@pytest.mark.parametrize("kernels", ["reference", "cpu_fast"])
def test_self_attention_over_leading_axes_equals_per_sequence(key, kernels):
    attn = MultiHeadAttention(16, 4, kernels=kernels, key=key)
    x = jax.random.normal(jax.random.fold_in(key, 1), (2, 3, 9, 16))

    def rotary(v):
        return attn(v, positions=rotary_positions)

    np.testing.assert_allclose(rotary(x), jax.vmap(jax.vmap(rotary))(x), atol=1e-5)


def test_layernorm_matches_equinox(key):
    x = jax.random.normal(key, (5, 12)) * 4 + 2
    np.testing.assert_allclose(LayerNorm(12)(x), jax.vmap(eqx.nn.LayerNorm(12))(x), atol=1e-5)


@pytest.mark.parametrize("length,frame_length,hop", [(100, 16, 8), (101, 12, 5), (64, 7, 3), (50, 4, 6)])
def test_frame_and_overlap_add_match_numpy(key, length, frame_length, hop):
    x = np.asarray(jax.random.normal(key, (2, length)))
    n = count_frames(length, frame_length, hop)
    expected = np.stack([x[:, i * hop : i * hop + frame_length] for i in range(n)], axis=1)
    frames = frame(jnp.asarray(x), frame_length, hop)
    np.testing.assert_array_equal(frames, expected)
    summed = np.zeros((2, (n - 1) * hop + frame_length), np.float32)
    for i in range(n):
        summed[:, i * hop : i * hop + frame_length] += expected[:, i]
    np.testing.assert_allclose(overlap_add(frames, hop), summed, atol=1e-6)


def test_frame_rejects_signal_shorter_than_a_frame():
    with pytest.raises(ValueError, match="shorter than one frame"):
        frame(jnp.zeros(5), 8, 4)


@pytest.mark.parametrize(
    "in_channels,kernel,stride,length", [(1, 16, 8, 1001), (2, 16, 8, 160), (1, 12, 5, 333)]
)
def test_conv_encoder_and_decoder_match_equinox_convs(key, in_channels, kernel, stride, length):
    enc = ConvEncoder(in_channels, 6, kernel, stride, key=key)
    x = jax.random.normal(jax.random.fold_in(key, 1), (in_channels, length))
    h = enc(x)
    np.testing.assert_allclose(h, jax.nn.gelu(enc.conv(x).T), atol=1e-5)
    dec = ConvDecoder(6, in_channels, kernel, stride, key=jax.random.fold_in(key, 2))
    np.testing.assert_allclose(dec(h), dec.conv(h.T), atol=1e-5)
    # The CPU kernel's projection: the same waveform, and the same gradients as autodiff of eqx's transposed conv.
    fast = ConvDecoder(6, in_channels, kernel, stride, kernels="cpu_fast", key=jax.random.fold_in(key, 2))
    np.testing.assert_allclose(fast(h), dec.conv(h.T), atol=1e-5)
    cotangent = jax.random.normal(jax.random.fold_in(key, 3), dec.conv(h.T).shape)
    ours = jax.grad(lambda d, v: jnp.sum(d(v) * cotangent), argnums=(0, 1))(fast, h)
    theirs = jax.grad(lambda d, v: jnp.sum(d.conv(v.T) * cotangent), argnums=(0, 1))(fast, h)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frames", [1, 15, 16, 17, 50])
def test_chunk_padding_round_trip(frames):
    x = jnp.arange(frames * 3, dtype=jnp.float32).reshape(frames, 3)
    padded = pad_to_multiple(x, 16)
    assert padded.shape[0] % 16 == 0 and padded.shape[0] - frames < 16
    np.testing.assert_array_equal(padded.reshape(-1, 16, 3).reshape(-1, 3)[:frames], x)
    np.testing.assert_array_equal(padded[frames:], 0)


@pytest.mark.parametrize("frames", [5, 16, 37])
def test_dual_path_block_is_identity_with_zero_layer_scale(key, frames):
    block = DualPathBlock(8, 2, 16, 16, layer_scale_init=0.0, key=key)
    x = jax.random.normal(key, (frames, 8))
    np.testing.assert_allclose(block(x, inference=True), x, atol=1e-6)


def test_dual_path_block_over_leading_axes_equals_per_sequence(key):
    block = DualPathBlock(8, 2, 16, 4, layer_scale_init=0.5, key=key)
    x = jax.random.normal(key, (3, 2, 13, 8))
    run = partial(block, inference=True)
    np.testing.assert_allclose(run(x), jax.vmap(jax.vmap(run))(x), atol=1e-5)


def test_dual_path_block_mixes_within_and_across_chunks(key):
    block = DualPathBlock(8, 2, 16, 4, layer_scale_init=1.0, key=key)
    x = jax.random.normal(key, (16, 8))
    jac = jax.jacobian(lambda v: block(v, inference=True)[0, 0])(x)
    assert float(jnp.abs(jac[3]).sum()) > 0  # same chunk
    assert float(jnp.abs(jac[12]).sum()) > 0  # reached through the inter-chunk pass


def test_transformer_block_over_leading_axes_equals_per_sequence_values_and_gradients(key):
    block = TransformerBlock(8, 2, 16, layer_scale_init=0.5, key=key)
    x = jax.random.normal(jax.random.fold_in(key, 1), (3, 2, 10, 8))
    g = jax.random.normal(jax.random.fold_in(key, 2), x.shape)
    params, static = eqx.partition(block, eqx.is_array)

    def together(p, v):
        return jnp.sum(eqx.combine(p, static)(v, inference=True) * g)

    def one_by_one(p, v):
        return jnp.sum(jax.vmap(jax.vmap(partial(eqx.combine(p, static), inference=True)))(v) * g)

    run = partial(block, inference=True)
    np.testing.assert_allclose(run(x), jax.vmap(jax.vmap(run))(x), atol=1e-5)
    got, want = (jax.grad(f, argnums=(0, 1))(params, x) for f in (together, one_by_one))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_snake_feed_forward_gradients_match_plain_autodiff_of_its_formula(key):
    ff = SnakeFeedForward(6, 24, key=key)
    ff = eqx.tree_at(lambda f: f.act.alpha, ff, jnp.linspace(0.3, 2.5, 24))
    x = jax.random.normal(jax.random.fold_in(key, 1), (2, 9, 6)) * 2

    def formula(f, v):
        h = v @ f.up.weight.T + f.up.bias
        h = h + jnp.sin(f.act.alpha * h) ** 2 / (f.act.alpha + f.act.eps)
        return jnp.sum(jnp.tanh(h @ f.down.weight.T + f.down.bias))

    got = eqx.filter_grad(lambda f, v: jnp.sum(jnp.tanh(f(v))))(ff, x)
    want = eqx.filter_grad(formula)(ff, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_transformer_block_layer_scale_init(key):
    block = TransformerBlock(8, 2, 16, key=key)
    np.testing.assert_allclose(block.scale_attn, np.full(8, 1e-4))
    assert block.scale_attn.dtype == jnp.float32


def test_glu_split_matches_formula(key):
    split = GLUSplit(4, 3, key=key)
    h = np.asarray(jax.random.normal(key, (5, 4)))
    z = h @ np.asarray(split.gate.weight).T + np.asarray(split.gate.bias)
    gated = 1 / (1 + np.exp(-z[:, :4])) * z[:, 4:]
    streams = gated @ np.asarray(split.expand.weight).T + np.asarray(split.expand.bias)
    out = split(jnp.asarray(h))
    assert out.shape == (3, 5, 4)
    np.testing.assert_allclose(out, streams.reshape(5, 3, 4).transpose(1, 0, 2), atol=1e-5)


def test_scan_over_stacked_blocks_equals_python_loop(key):
    blocks = stacked(lambda k: TransformerBlock(8, 2, 16, layer_scale_init=0.5, key=k), 3, key=key)
    x = jax.random.normal(key, (10, 8))
    scanned = scan_blocks(blocks, x, lambda b, v, k: b(v, inference=True), key=None)
    looped = x
    for i in range(3):
        layer = jax.tree.map(lambda a, i=i: a[i] if eqx.is_array(a) else a, blocks)
        looped = layer(looped, inference=True)
    np.testing.assert_allclose(scanned, looped, atol=1e-5)
    rematted = scan_blocks(blocks, x, lambda b, v, k: b(v, inference=True), key=None, remat=True)
    np.testing.assert_allclose(rematted, scanned, atol=1e-6)
    unrolled = scan_blocks(blocks, x, lambda b, v, k: b(v, inference=True), key=None, unroll=True)
    np.testing.assert_allclose(unrolled, scanned, atol=1e-6)

    def lowered(unroll):
        def run(bl, v):
            return scan_blocks(bl, v, lambda b, h, k: b(h, inference=True), key=None, unroll=unroll)

        return eqx.filter_jit(run).lower(blocks, x).as_text()

    assert "stablehlo.while" in lowered(False) and "stablehlo.while" not in lowered(True)


def test_scan_alike_threads_each_blocks_state_and_refuses_blocks_of_other_shapes(key):
    """Three BatchNorms applied in turn: scanned, each one's running statistics come back to its own entry."""
    from sepjax.nn.batch_norm import BatchNorm

    norms, state = eqx.nn.make_with_state(lambda: tuple(BatchNorm(4, "batch") for _ in range(3)))()
    x = jax.random.normal(key, (2, 6, 4)) * 3 + 1

    def run(unroll):
        def apply(norm, h, s, k):
            y, s = norm(h, s, inference=False)
            return y * 2 + 3, s

        fresh = jax.tree.map(lambda a: a, state)  # a State is spent once updated
        return jax.vmap(lambda v: scan_alike(norms, v, fresh, apply, key=None, unroll=unroll), axis_name="batch",
                        out_axes=(0, None))(x)

    (y, stats), (y_u, stats_u) = run(False), run(True)
    # Outputs up to ~10 after three normalisations: a few float32 ulps (1e-6 each at 8) of reordered sums.
    np.testing.assert_allclose(y, y_u, rtol=0, atol=1e-5)
    means = [stats_u.get(n.stats)[0] for n in norms]
    assert not np.allclose(means[0], means[1])  # each norm saw a different input
    for n, mean in zip(norms, means, strict=True):
        np.testing.assert_allclose(stats.get(n.stats)[0], mean, rtol=1e-6)
    wide, wide_state = eqx.nn.make_with_state(lambda: (BatchNorm(4, "batch"), BatchNorm(5, "batch")))()
    with pytest.raises(ValueError, match="block 1's arrays differ"):
        scan_alike(wide, x[0], wide_state, lambda n, h, s, k: (h, s), key=None)


def torch_batch_norm_reference(x, mean, var, weight, bias, eps=1e-5, momentum=0.1):
    """PyTorch's BatchNorm1d (train mode) in NumPy float64: x (N, T, C); returns y and the new running stats."""
    x = x.astype(np.float64)
    batch_mean = x.mean(axis=(0, 1))
    batch_var = x.var(axis=(0, 1))
    n = x.shape[0] * x.shape[1]
    y = (x - batch_mean) / np.sqrt(batch_var + eps) * weight + bias
    return y, (1 - momentum) * mean + momentum * batch_mean, (1 - momentum) * var + momentum * batch_var * n / (n - 1)


def test_batch_norm_has_pytorch_semantics_in_training_and_eval():
    from sepjax.nn.batch_norm import BatchNorm

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 50, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]).astype(np.float32)
    layer, state = eqx.nn.make_with_state(BatchNorm)(4, "batch")
    layer = eqx.tree_at(lambda m: (m.weight, m.bias), layer, (jnp.asarray([1.0, 0.5, 2.0, -1.0]),
                                                                  jnp.asarray([0.1, 0.0, -0.3, 0.2])))
    start_mean, start_var, _ = (np.asarray(v) for v in state.get(layer.stats))
    np.testing.assert_array_equal(start_mean, np.zeros(4))  # PyTorch's initial running statistics
    np.testing.assert_array_equal(start_var, np.ones(4))
    train = jax.vmap(lambda e, s: layer(e, s, inference=False), axis_name="batch", in_axes=(0, None),
                     out_axes=(0, None))
    y, state = train(jnp.asarray(x), state)
    want_y, want_mean, want_var = torch_batch_norm_reference(x, start_mean, start_var, np.asarray(layer.weight),
                                                             np.asarray(layer.bias))
    # float32 means and variances over 150 values: ~1e-6 relative; the outputs are O(1).
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    mean, var, tracked = state.get(layer.stats)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, want_var, rtol=1e-5)  # the unbiased batch variance
    assert int(tracked) == 1
    # Eval: the running statistics as they are, with no debiasing by the step count.
    out, same = layer(jnp.asarray(x[0]), state, inference=True)
    expected = (x[0] - want_mean) / np.sqrt(want_var + 1e-5) * np.asarray(layer.weight) + np.asarray(layer.bias)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert int(same.get(layer.stats)[2]) == 1


def test_batch_norm_averages_over_every_named_axis():
    from sepjax.nn.batch_norm import BatchNorm

    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 20, 5)), jnp.float32)  # (batch, stem, T, C)
    layer, state = eqx.nn.make_with_state(BatchNorm)(5, ("batch", "stem"))
    inner = jax.vmap(lambda e, s: layer(e, s, inference=False), axis_name="stem", in_axes=(0, None),
                     out_axes=(0, None))
    outer = jax.vmap(inner, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
    y, state = outer(x, state)
    flat = np.asarray(x).reshape(-1, 5)
    np.testing.assert_allclose(np.asarray(y).reshape(-1, 5), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.get(layer.stats)[1], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
