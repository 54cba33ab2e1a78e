"""The XLA:CPU kernels (`sepjax.nn.kernels`) against their reference implementations: values and gradients.

Tolerances are float32 arithmetic: a reordered sum of n products of unit-scale terms differs by about
n·2⁻²⁴ of its scale, and the polynomial sine is within 3e-7 of sin.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sepjax.models import build_model, get_config
from sepjax.nn.dropout import dropout
from sepjax.nn.kernels.attention import head_major_attention
from sepjax.nn.kernels.projection import project
from sepjax.nn.kernels.sine import fast_sin, snake
from sepjax.nn.snake import snake_reference
from sepjax.train.step import training_forward


def test_fast_sin_matches_numpy_over_wide_range():
    y = np.concatenate([np.linspace(-50, 50, 100_001), [0.0, np.pi / 2, -np.pi, 1e3]]).astype(np.float32)
    np.testing.assert_allclose(np.asarray(fast_sin(jnp.asarray(y))), np.sin(y.astype(np.float64)),
                               atol=2e-6)


def test_snake_kernel_values_and_gradients_match_the_reference(key):
    x = jax.random.normal(key, (32, 8)) * 3
    alpha = jnp.linspace(0.2, 3.0, 8)
    np.testing.assert_allclose(snake(x, alpha, 1e-6), snake_reference(x, alpha, 1e-6), atol=1e-5)

    def loss(fn):
        return lambda x, a: jnp.sum(jnp.tanh(fn(x, a, 1e-6)))

    for arg in (0, 1):
        np.testing.assert_allclose(jax.grad(loss(snake), arg)(x, alpha), jax.grad(loss(snake_reference), arg)(x, alpha),
                                   atol=1e-4)


def test_snake_kernel_gradients_in_bfloat16_track_float32(key):
    x = jax.random.normal(key, (64, 8)) * 3
    alpha = jnp.linspace(0.2, 3.0, 8)

    def loss(x, a):
        return jnp.sum(jnp.tanh(snake(x, a, 1e-6)).astype(jnp.float32))

    for arg in (0, 1):
        want = jax.grad(loss, arg)(x, alpha)
        got = jax.grad(loss, arg)(x.astype(jnp.bfloat16), alpha.astype(jnp.bfloat16))
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=5e-2, atol=5e-2 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize("seq,kv_seq", [(64, 64), (7, 5)])
def test_head_major_attention_matches_dot_product_attention_and_its_gradients(key, seq, kv_seq):
    kq, kk, kv, kg = jax.random.split(key, 4)
    q = jax.random.normal(kq, (3, seq, 4, 8))
    k = jax.random.normal(kk, (3, kv_seq, 4, 8)) * 2
    v = jax.random.normal(kv, (3, kv_seq, 4, 8))
    d_out = jax.random.normal(kg, (3, seq, 4, 8))
    reference = jax.vmap(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla"))
    out, pullback = jax.vjp(jax.vmap(head_major_attention), q, k, v)
    expected, expected_pullback = jax.vjp(reference, q, k, v)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    for got, want in zip(pullback(d_out), expected_pullback(d_out), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)


def reference_attention_with_bias_and_dropout(q, k, v, bias, key, rate):
    """The reference path of `MultiHeadAttention` in training mode: autodiff through the softmax and dropout."""
    logits = jnp.einsum("bthd,bshd->bhts", q, k) * (1.0 / q.shape[-1] ** 0.5) + bias
    weights = dropout(jax.nn.softmax(logits, axis=-1), rate, key=key, inference=False)
    return jnp.einsum("bhts,bshd->bthd", weights, v)


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_head_major_attention_with_bias_and_dropout_matches_the_reference_and_its_gradients(key, rate):
    """Values and the gradients of q, k, v and the bias; under vmap with one dropout key per example."""
    kq, kk, kv, kb, kg, kd = jax.random.split(key, 6)
    q = jax.random.normal(kq, (3, 1, 10, 4, 8))
    k = jax.random.normal(kk, (3, 1, 10, 4, 8)) * 2
    v = jax.random.normal(kv, (3, 1, 10, 4, 8))
    bias = jax.random.normal(kb, (3, 1, 4, 10, 10))
    d_out = jax.random.normal(kg, (3, 1, 10, 4, 8))
    keys = jax.random.split(kd, 3)
    kernel = jax.vmap(lambda q, k, v, b, key: head_major_attention(q, k, v, b, dropout=rate, key=key))
    reference = jax.vmap(lambda q, k, v, b, key: reference_attention_with_bias_and_dropout(q, k, v, b, key, rate))
    out, pullback = jax.vjp(lambda q, k, v, b: kernel(q, k, v, b, keys), q, k, v, bias)
    expected, expected_pullback = jax.vjp(lambda q, k, v, b: reference(q, k, v, b, keys), q, k, v, bias)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    for got, want in zip(pullback(d_out), expected_pullback(d_out), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    if rate:  # the keys matter: another key drops other weights
        other = kernel(q, k, v, bias, jax.random.split(kg, 3))
        assert not np.allclose(out, other, atol=1e-3)


def test_head_major_attention_over_leading_axes_equals_the_vmapped_one(key):
    q, k, v, d_out = jax.random.normal(key, (4, 2, 3, 12, 2, 8))
    out, pullback = jax.vjp(head_major_attention, q, k, v)
    expected, expected_pullback = jax.vjp(jax.vmap(jax.vmap(head_major_attention)), q, k, v)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    for got, want in zip(pullback(d_out), expected_pullback(d_out), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_head_major_attention_in_bfloat16_keeps_the_dtype_and_tracks_float32(key):
    q, k, v = jax.random.normal(key, (3, 32, 2, 16))
    out = head_major_attention(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), head_major_attention(q, k, v), atol=5e-2)
    grads = jax.grad(lambda q: jnp.sum(head_major_attention(q, k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
                                       .astype(jnp.float32)))(q.astype(jnp.bfloat16))
    assert grads.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grads.astype(jnp.float32))))


@pytest.mark.parametrize("in_features,out_features", [(6, 20), (20, 6), (8, 8)])
def test_project_values_and_gradients_match_the_plain_matmul_under_vmap(key, in_features, out_features):
    kx, kw, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (3, 5, 7, in_features))
    weight = jax.random.normal(kw, (out_features, in_features))
    grad = jax.random.normal(kg, (3, 5, 7, out_features))
    out, pullback = jax.vjp(jax.vmap(project, in_axes=(0, None)), x, weight)  # the weight is shared across the map
    want, want_pullback = jax.vjp(jax.vmap(lambda x, w: x @ w.T, in_axes=(0, None)), x, weight)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(pullback(grad), want_pullback(grad), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_project_in_bfloat16_keeps_the_dtype(key):
    x = jax.random.normal(key, (16, 8)).astype(jnp.bfloat16)
    weight = jnp.ones((24, 8), jnp.bfloat16)
    d_x, d_weight = jax.grad(lambda x, w: jnp.sum(project(x, w).astype(jnp.float32)), argnums=(0, 1))(x, weight)
    assert project(x, weight).dtype == d_x.dtype == d_weight.dtype == jnp.bfloat16
    np.testing.assert_allclose(d_weight.astype(jnp.float32), jnp.broadcast_to(jnp.sum(x.astype(jnp.float32), 0),
                                                                               (24, 8)), rtol=2e-2, atol=2e-2)


def test_dual_path_model_with_cpu_fast_kernels_equals_the_reference_model(key):
    """The whole model, both settings, the same weights: outputs and every parameter's gradient."""
    config = get_config("dual-path-sepreformer-tiny", layer_scale_init=0.5)
    reference = build_model(config, key=key)
    fast = build_model(config.replace(kernels="cpu_fast"), key=key)
    mixture = jax.random.normal(jax.random.fold_in(key, 1), (1, 800))
    for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(fast), strict=True):
        np.testing.assert_array_equal(a, b)  # same parameter tree and values: only the static choice differs

    def loss(model):
        return jnp.sum(jnp.tanh(model(mixture)))

    want, got = reference(mixture), fast(mixture)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))
    want_grads, got_grads = eqx.filter_grad(loss)(reference), eqx.filter_grad(loss)(fast)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-7)


def test_paper_model_with_cpu_fast_kernels_trains_as_the_reference_model(key):
    """The paper model's training-mode forward (dropout, batch statistics, auxiliary heads) and every parameter's
    gradient of its loss, both settings, the same weights and dropout keys."""
    config = get_config("sepreformer-tiny", dropout=0.2, layer_scale_init=0.5)
    reference = build_model(config, key=key)
    fast = build_model(config.replace(kernels="cpu_fast"), key=key)
    mixtures = jax.random.normal(jax.random.fold_in(key, 1), (2, 1, 640))
    keys = jax.random.split(jax.random.fold_in(key, 2), 2)

    def loss(model):
        estimates, aux, _ = training_forward(model, mixtures, keys)
        return jnp.sum(jnp.tanh(estimates)) + jnp.sum(jnp.tanh(aux))

    want, got = training_forward(reference, mixtures, keys), training_forward(fast, mixtures, keys)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
    want_grads, got_grads = eqx.filter_grad(loss)(reference), eqx.filter_grad(loss)(fast)
    # A parameter that BatchNorm cancels (a bias just before it) has a gradient of float32 noise: it is held to the
    # reordering error of sums at the scale of the whole gradient.
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(want_grads))
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(jnp.max(jnp.abs(b))) + 1e-5 * scale)


def test_the_default_kernels_are_the_reference_ones():
    for name in ("dual-path-sepreformer", "dual-path-sepreformer-tiny", "sepreformer-t", "sepreformer-tiny"):
        assert get_config(name).kernels == "reference"


def test_cpu_fast_unrolls_the_paper_models_two_finest_rates_and_scans_the_rest():
    def unrolled(config):
        network = eqx.filter_eval_shape(build_model, config, key=jax.random.PRNGKey(0)).network
        return ([stage.unroll for stage in network.enc_stages], network.bottleneck.unroll,
                [stage.unroll for stage in network.dec_stages])

    config = get_config("sepreformer-t")
    # Encoder stages run at 1, 1/2, 1/4, 1/8 of the frame rate, the bottleneck at 1/16, decoder stages 1/8 … 1.
    assert unrolled(config.replace(kernels="cpu_fast")) == ([True, True, False, False], False,
                                                            [False, False, True, True])
    assert unrolled(config) == ([False] * 4, False, [False] * 4)
    assert unrolled(config.replace(unroll=True)) == ([True] * 4, True, [True] * 4)
