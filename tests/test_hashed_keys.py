"""Hashed PRNG keys (`sepjax.nn.hashed_keys`): split, fold_in and bits as independent as Threefry's, and the train
step's dropout keys come from them.

Each statistic is a count over a fixed, seeded draw, so each test is deterministic; the bounds are six binomial
standard deviations, which fair coins pass and a biased or correlated hash does not (as in `test_dropout.py`).
"""

from collections import Counter

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import jaxprs_in_params

from sepjax.losses import CompositeLossConfig
from sepjax.models import build_model, get_config
from sepjax.nn.dropout import keep_mask
from sepjax.nn.hashed_keys import HASHED_KEYS, hashed
from sepjax.train import Batch, TrainState, make_optimizer
from sepjax.train import step as step_module

N = 1 << 18


def six_sigma(p: float, n: int) -> float:
    return 6.0 * np.sqrt(p * (1 - p) / n)


def threefry(seed: int):
    return jax.random.PRNGKey(seed)


def hashed_key(seed: int):
    return hashed(jax.random.PRNGKey(seed))


def coins(key) -> np.ndarray:
    return np.asarray(keep_mask(key, (N,), 0.5))


def assert_independent(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert abs(a.mean() - 0.5) < six_sigma(0.5, N), what
    assert abs((a & b).mean() - 0.25) < six_sigma(0.25, N), what


@pytest.mark.parametrize("make", [threefry, hashed_key], ids=["threefry", "hashed"])
def test_siblings_parents_children_and_folded_keys_give_independent_masks(make):
    parent = make(3)
    children = jax.random.split(parent, 4)
    masks = [coins(k) for k in children]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert_independent(masks[i], masks[j], f"siblings {i}, {j}")
    assert_independent(coins(parent), masks[0], "parent and child")
    grandchild = jax.random.split(children[0])[1]
    assert_independent(masks[0], coins(grandchild), "child and grandchild")
    # Consecutive steps' keys, as `TrainState.step_key` makes them. (Threefry's fold_in(key, i) is its
    # split(key, n)[i], so folded and split keys are not compared.)
    steps = [coins(jax.random.fold_in(parent, s)) for s in (0, 1, 2)]
    assert_independent(steps[0], steps[1], "fold_in 0, 1")
    assert_independent(steps[1], steps[2], "fold_in 1, 2")


def test_keys_split_down_a_deep_tree_are_all_distinct_and_uniform():
    """The model splits its key level by level down to every dropout site: 8⁵ leaves here, no two alike, and
    their first words' bits fair."""
    keys = hashed_key(0)[None]
    for _ in range(5):
        keys = jax.vmap(lambda k: jax.random.split(k, 8))(keys).reshape(-1)
    words = np.asarray(jax.random.key_data(keys))
    assert len({tuple(w) for w in words}) == len(words) == 8**5
    bits = ((words[:, :1] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < six_sigma(0.5, len(words)))


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.uint16, jnp.uint32])
def test_bits_of_every_width_are_uniform_bytes(dtype):
    """Each byte of the bits over its 256 values: a chi-square test at 6 standard deviations of its 255 degrees."""
    bits = np.asarray(jax.random.bits(hashed_key(11), (N,), dtype))
    assert bits.dtype == dtype
    for shift in range(0, 8 * bits.dtype.itemsize, 8):
        counts = np.bincount((bits.astype(np.uint32) >> shift) & 0xFF, minlength=256)
        expected = len(bits) / 256
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 255 + 6 * np.sqrt(2 * 255), (shift, chi2)
    uniform = np.asarray(jax.random.uniform(hashed_key(12), (N,)))
    assert uniform.min() >= 0.0 and uniform.max() < 1.0
    assert abs(uniform.mean() - 0.5) < 6 * np.sqrt(1 / 12 / N)


def test_64_bit_words_join_two_32_bit_words():
    """With 64-bit types on, element i's word is the 32-bit stream's words i and size + i, high then low."""
    key = hashed_key(3)
    with jax.enable_x64(True):
        wide = np.asarray(jax.random.bits(key, (5,), jnp.uint64))
        narrow = np.asarray(jax.random.bits(key, (10,), jnp.uint32)).astype(np.uint64)
    assert wide.dtype == np.uint64
    np.testing.assert_array_equal(wide, (narrow[:5] << np.uint64(32)) | narrow[5:])


def test_hashed_keeps_the_key_words_and_works_batched():
    raw = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(jax.random.key_data(hashed(raw)), raw)
    np.testing.assert_array_equal(jax.random.key_data(hashed(jax.random.key(5))), raw)
    assert jax.random.key_impl(hashed(raw)) == jax.random.key_impl(jax.random.key(0, impl=HASHED_KEYS))
    keys = hashed(jax.random.split(raw, 3))
    together = np.asarray(jax.vmap(lambda k: jax.random.bits(k, (16,)))(keys))
    for i in range(3):
        np.testing.assert_array_equal(together[i], np.asarray(jax.random.bits(keys[i], (16,))))
    assert len({tuple(row) for row in together}) == 3
    # Seeding a hashed key directly: distinct seeds, distinct keys, the same seed the same key.
    seeded = [tuple(np.asarray(jax.random.key_data(jax.random.key(s, impl=HASHED_KEYS)))) for s in (0, 1, 0)]
    assert seeded[0] == seeded[2] != seeded[1]


def test_a_key_of_other_than_two_words_is_refused():
    with pytest.raises(ValueError, match=r"two uint32 words.*uint32\[4\]"):
        hashed(jnp.zeros(4, jnp.uint32))
    with pytest.raises(ValueError, match="two uint32 words"):
        hashed(jnp.zeros(2, jnp.int32))


def random_ops(jaxpr, counts: Counter | None = None) -> Counter:
    """(primitive, key type) of every split, fold_in and bits draw in a jaxpr and the jaxprs nested in it."""
    counts = Counter() if counts is None else counts
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("random_split", "random_fold_in", "random_bits"):
            counts[eqn.primitive.name, str(eqn.invars[0].aval.dtype)] += 1
        for sub in jaxprs_in_params(eqn.params):
            random_ops(sub, counts)
    return counts


def test_the_train_step_splits_its_dropout_keys_without_threefry():
    """One Threefry hash remains, `TrainState.step_key`'s fold_in; the model's splits, down to every dropout
    site of the paper's model, and its dropout masks' seeds use the hashed keys."""
    config = get_config("sepreformer-tiny", dropout=0.1)
    optimizer = make_optimizer()
    state = TrainState.create(build_model(config, key=jax.random.PRNGKey(0)), optimizer, key=jax.random.PRNGKey(1))
    batch = Batch.from_targets(np.full((2, config.num_stems, 1, 800), 0.1, np.float32))
    loss = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0)
    jaxpr, _, _ = eqx.filter_make_jaxpr(lambda b, s: step_module._update(b, s, optimizer, loss, 0.0))(batch, state)
    counts = random_ops(jaxpr.jaxpr)
    assert {op: n for op, n in counts.items() if "fry" in op[1]} == {("random_fold_in", "key<fry>"): 1}, counts
    assert counts["random_split", "key<lb32>"] > 10 and counts["random_bits", "key<lb32>"] > 10, counts
