"""sepjax's hashed dropout: the keep rate, the independence of elements and of keys, against jax.random.bernoulli.

Every statistic is a count over a fixed, seeded draw, so each test is deterministic; the bounds are six binomial
standard deviations, which a fair coin's counts pass and a biased or correlated hash does not.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sepjax.nn.dropout import dropout, keep_mask, uniform_bits

N = 1 << 20
RATE = 0.05


def six_sigma(p: float, n: int) -> float:
    return 6.0 * np.sqrt(p * (1 - p) / n)


def bernoulli_drops(key, shape, rate):
    return ~np.asarray(jax.random.bernoulli(key, 1 - rate, shape))


def hashed_drops(key, shape, rate):
    return ~np.asarray(keep_mask(key, shape, rate))


@pytest.mark.parametrize("drops", [bernoulli_drops, hashed_drops], ids=["jax.random.bernoulli", "sepjax"])
@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_drop_rate_and_independence_of_elements_as_bernoulli(drops, rate):
    mask = drops(jax.random.PRNGKey(3), (N,), rate)
    assert abs(mask.mean() - rate) < six_sigma(rate, N)
    # Pairs of elements at distances that line up with the index's bits: both dropped as often as two coins.
    for stride in (1, 2, 3, 16, 256, 4096, 65536):
        both = (mask[:-stride] & mask[stride:]).mean()
        assert abs(both - rate**2) < six_sigma(rate**2, N - stride), stride


@pytest.mark.parametrize("drops", [bernoulli_drops, hashed_drops], ids=["jax.random.bernoulli", "sepjax"])
def test_masks_of_different_keys_are_independent_as_bernoulli(drops):
    keys = jax.random.split(jax.random.PRNGKey(7), 4)
    masks = [drops(k, (N,), 0.5) for k in keys]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert abs((masks[i] & masks[j]).mean() - 0.25) < six_sigma(0.25, N)
    # Consecutive keys from fold_in (as per-step keys are made) too.
    a, b = (drops(jax.random.fold_in(jax.random.PRNGKey(0), step), (N,), 0.5) for step in (0, 1))
    assert abs((a & b).mean() - 0.25) < six_sigma(0.25, N)


def test_bits_are_uniform_bytes():
    """The 32 bits' four bytes over 256 values: a chi-square test at 6 standard deviations of its 255 degrees."""
    bits = np.asarray(uniform_bits(jax.random.PRNGKey(11), (N // 4,)))
    for shift in (0, 8, 16, 24):
        counts = np.bincount((bits >> shift) & 0xFF, minlength=256)
        expected = len(bits) / 256
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 255 + 6 * np.sqrt(2 * 255), (shift, chi2)


def test_batched_keys_give_each_example_its_own_mask():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    masks = np.asarray(jax.vmap(lambda k: keep_mask(k, (4096,), 0.5))(keys))
    assert masks.shape == (3, 4096)
    assert all((masks[i] != masks[j]).mean() > 0.4 for i in range(3) for j in range(i + 1, 3))
    np.testing.assert_array_equal(masks[1], np.asarray(keep_mask(keys[1], (4096,), 0.5)))


def test_dropout_scales_what_it_keeps_and_its_gradient_is_the_mask():
    x = jnp.linspace(-1.0, 1.0, 10_000, dtype=jnp.float32)
    key = jax.random.PRNGKey(5)
    y = dropout(x, RATE, key=key, inference=False)
    kept = np.asarray(keep_mask(key, x.shape, RATE))
    np.testing.assert_array_equal(np.asarray(y)[~kept], 0.0)
    np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / (1 - RATE), rtol=2e-7)
    np.testing.assert_array_equal(np.asarray(dropout(x, RATE, key=key, inference=False)), np.asarray(y))
    grad = jax.grad(lambda x: dropout(x, RATE, key=key, inference=False).sum())(x)
    np.testing.assert_allclose(np.asarray(grad), kept / (1 - RATE), rtol=2e-7)


def test_inference_rate_zero_and_bad_arguments():
    x = jnp.ones(8)
    assert dropout(x, RATE, key=None, inference=True) is x
    assert dropout(x, 0.0, key=jax.random.PRNGKey(0), inference=False) is x
    with pytest.raises(RuntimeError, match="requires a key"):
        dropout(x, RATE, key=None, inference=False)
    with pytest.raises(ValueError, match="rate 1.0"):
        keep_mask(jax.random.PRNGKey(0), (8,), 1.0)
