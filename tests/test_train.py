"""Train step and the overfit sanity check on the tiny model."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sepjax.data.synthetic import harmonic_stems
from sepjax.losses import si_sdr
from sepjax.models import build_model, get_config
from sepjax.train import Batch, TrainState, make_optimizer, overfit_one_batch, train_step, train_steps
from sepjax.train.config import OptimConfig
from sepjax.train.optim import build_optimizer

TINY = get_config("dual-path-sepreformer-tiny")


@pytest.fixture(autouse=True)
def standard_promotion():
    # optax's Adam bias correction mixes Python floats with its int32 count: not strict-clean.
    with jax.numpy_dtype_promotion("standard"):
        yield


def test_train_step_updates_params_counts_steps_and_compiles_once(compiles):
    model = build_model(TINY, key=jax.random.PRNGKey(0))
    optimizer = make_optimizer()
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(1))
    before = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    before = [np.asarray(x) for x in before]
    batch = Batch.from_targets(harmonic_stems(2, 4, 2000, 8000))
    state, metrics = train_step(optimizer, state, batch)
    assert compiles.count >= 1
    compiled = compiles.count
    for _ in range(2):
        state, metrics = train_step(optimizer, state, batch)
    assert compiles.count == compiled  # the later steps reuse the first one's program
    assert int(state.step) == 3
    assert set(metrics) >= {"loss", "grad_norm", "si_sdr", "mr_stft"}
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    after = jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_several_steps_per_call_equal_as_many_single_steps():
    config = TINY.replace(dropout=0.1)  # each step draws its own dropout key inside the scan too
    optimizer = make_optimizer()
    targets = [harmonic_stems(2, 4, 2000, 8000, seed=s) for s in range(3)]
    targets[1][0, 0, 0, 10] = np.nan  # the middle step is skipped
    batches = [Batch.from_targets(t) for t in targets]

    def fresh():
        return TrainState.create(build_model(config, key=jax.random.PRNGKey(0)), optimizer,
                                 key=jax.random.PRNGKey(1), ema=True)

    def leaves(state):
        return [np.asarray(x, np.float64) for x in jax.tree.leaves(eqx.filter(state, eqx.is_inexact_array))]

    initial = leaves(fresh())
    one_by_one, singles = fresh(), []
    for batch in batches:
        one_by_one, metrics = train_step(optimizer, one_by_one, batch, ema_decay=0.9)
        singles.append(metrics)
    stacked = Batch(*(jnp.stack(parts) for parts in zip(*batches, strict=True)))
    in_one_call, metrics = train_steps(optimizer, fresh(), stacked, ema_decay=0.9)
    assert int(in_one_call.step) == 3
    np.testing.assert_array_equal(metrics["skipped"], [0, 1, 0])
    # The scanned and the single step are separate XLA programs, which may fuse and order float32 sums
    # differently: each op then rounds differently by about ε = 1.2e-7, and a forward and backward pass through
    # the model's ~100 ops compounds that to ~1e-5. The last step starts from parameters that already differ
    # by the first update's rounding, which the loss's gradient (norm ~1e3) amplifies: 1e-3 bounds both.
    for name in ("loss", "grad_norm", "si_sdr"):
        expected = [float(singles[i][name]) for i in (0, 2)]
        np.testing.assert_allclose(np.asarray(metrics[name])[[0, 2]], expected, rtol=1e-3)
    # Model, optimiser moments and EMA: each leaf's update (new − initial), relative to its size. Adam divides
    # by √v, so a gradient component at rounding level may move its weight by ±lr either way; such components
    # are few, and they change a leaf's update by well under 1%. A missing, repeated or unskipped step, another
    # dropout key or another EMA blend changes it by tens of per cent.
    for x0, a, b in zip(initial, leaves(one_by_one), leaves(in_one_call), strict=True):
        update, scanned_update = a - x0, b - x0
        assert np.linalg.norm(update) > 0
        assert np.linalg.norm(scanned_update - update) <= 1e-2 * np.linalg.norm(update), a.shape


def test_overfit_tiny_model_gains_10_db_on_one_batch():
    targets = harmonic_stems(2, 4, 4000, 8000, seed=3)
    batch = Batch.from_targets(targets)
    model = build_model(TINY, key=jax.random.PRNGKey(0))
    model, history = overfit_one_batch(model, batch, steps=150, lr=3e-3)
    estimates = jax.vmap(model)(batch.mixture)
    final = float(jnp.mean(si_sdr(estimates, batch.targets)))
    mixture_as_estimate = jnp.broadcast_to(batch.mixture[:, None], batch.targets.shape)
    mixture_baseline = float(jnp.mean(si_sdr(mixture_as_estimate, batch.targets)))
    assert history.gain_db >= 10.0
    assert final - mixture_baseline >= 3.0, (final, mixture_baseline)
    assert history.loss[-1] < history.loss[0]


def test_a_non_finite_batch_skips_the_update():
    model = build_model(TINY, key=jax.random.PRNGKey(0))
    optimizer = make_optimizer()
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(1), ema=True)
    before = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
    targets = harmonic_stems(2, 4, 2000, 8000)
    targets[0, 0, 0, 10] = np.nan
    state, metrics = train_step(optimizer, state, Batch.from_targets(targets), ema_decay=0.9)
    assert int(metrics["skipped"]) == 1 and int(state.step) == 1
    after = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))]
    ema = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.ema, eqx.is_inexact_array))]
    for a, b, e in zip(before, after, ema, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, e)
    state, metrics = train_step(optimizer, state, Batch.from_targets(harmonic_stems(2, 4, 2000, 8000)), ema_decay=0.9)
    assert int(metrics["skipped"]) == 0
    moved = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))]
    ema = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.ema, eqx.is_inexact_array))]
    for b, m, e in zip(before, moved, ema, strict=True):  # EMA moves a tenth of the way
        np.testing.assert_allclose(e, 0.9 * b + 0.1 * m, rtol=1e-5, atol=1e-7)


def test_train_step_equals_the_update_of_each_parameter_array():
    """The step updates one flat vector; the same step on the parameter tree (optax's clip and AdamW per array,
    the paper model's BatchNorm statistics stored back) gives the same model."""
    from sepjax.losses import CompositeLossConfig, aux_loss_weight
    from sepjax.models.base import trainable
    from sepjax.train import batch_loss

    model = build_model(get_config("sepreformer-tiny", dropout=0.0), key=jax.random.PRNGKey(0))
    batch = Batch.from_targets(harmonic_stems(2, 2, 1600, 8000))
    loss_config = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0)
    params, frozen = eqx.partition(model, trainable(model))
    (_, (_, stats)), grads = jax.value_and_grad(
        lambda p: batch_loss(eqx.combine(p, frozen), batch, None, loss_config,
                             aux_loss_weight(jnp.zeros((), jnp.int32), loss_config)), has_aux=True)(params)
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=1e-2))
    updates, _ = reference.update(grads, reference.init(params), params)
    expected = eqx.apply_updates(model, updates).with_stats(stats)

    optimizer = make_optimizer(1e-2)
    fresh = jax.tree.map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, model)  # the step donates its state
    state, metrics = train_step(optimizer, TrainState.create(fresh, optimizer, key=jax.random.PRNGKey(1)), batch,
                                loss_config)
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    # AdamW's first update is lr·g/(|g| + ε) per element, whatever g's size: where a gradient is float32 noise
    # (a bias that BatchNorm cancels), the two programs' reordered sums give other noise and another update of up
    # to lr. Those elements are held only to that size; the rest to a thousandth of lr.
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
    got, want = (jax.tree.leaves(eqx.filter(m, trainable(m))) for m in (state.model, expected))
    for a, b, g in zip(got, want, jax.tree.leaves(grads), strict=True):
        a, b, signal = np.asarray(a), np.asarray(b), np.abs(np.asarray(g)) >= 1e-5 * scale
        np.testing.assert_allclose(a[signal], b[signal], rtol=1e-6, atol=1e-5)
        assert np.all(np.abs(a - b) <= 2.1e-2)
    got_stats, want_stats = jax.tree.leaves(state.model.stats), jax.tree.leaves(expected.stats)
    assert got_stats and len(got_stats) == len(want_stats)
    for a, b in zip(got_stats, want_stats, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_step_compiles_with_the_cpu_options_unless_xla_flags_set_the_level(monkeypatch):
    from sepjax.train.step import _donating_step

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    assert _donating_step.jitted() is _donating_step.cpu
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert _donating_step.jitted() is _donating_step.plain


def test_this_jaxlib_accepts_every_cpu_compiler_option():
    from sepjax.train.step import CPU_COMPILER_OPTIONS

    # XLA refuses an option it does not know, or an enum value it does not have, when it compiles.
    x = jnp.arange(8.0)
    compiled = jax.jit(lambda v: jnp.sin(v) * 2, compiler_options=CPU_COMPILER_OPTIONS).lower(x).compile()
    np.testing.assert_allclose(compiled(x), np.sin(np.arange(8.0)) * 2, rtol=1e-6)


def test_flat_optimizer_matches_optax_chain_on_the_parameter_tree():
    from sepjax.train.config import OptimConfig
    from sepjax.train.optim import build_optimizer

    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    params = {"w": jax.random.normal(keys[0], (3, 5)), "b": jax.random.normal(keys[1], (5,))}
    grads = [{"w": scale * jax.random.normal(k, (3, 5)), "b": scale * jax.random.normal(k, (5,))}
             for scale, k in zip((4.0, 0.05), keys[2:], strict=True)]
    assert float(optax.tree.norm(grads[0])) > 1.0 > float(optax.tree.norm(grads[1]))  # clipped, then not
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2, weight_decay=1e-2))
    configured = build_optimizer(OptimConfig(lr=1e-2, weight_decay=1e-2, warmup_steps=0, schedule="constant"), 10)
    for optimizer in (make_optimizer(1e-2), configured):
        state, ref_state = optimizer.init(params), reference.init(params)
        assert len(jax.tree.leaves(state)) < len(jax.tree.leaves(ref_state))  # one flat vector per moment
        p, ref_p = params, params
        for g in grads:
            updates, state = optimizer.update(g, state, p)
            ref_updates, ref_state = reference.update(g, ref_state, ref_p)
            p, ref_p = optax.apply_updates(p, updates), optax.apply_updates(ref_p, ref_updates)
        assert not np.allclose(p["w"], params["w"])
        for name in params:
            np.testing.assert_allclose(p[name], ref_p[name], rtol=1e-6, atol=1e-7)


def test_gradient_accumulation_updates_every_k_steps():
    from sepjax.train.config import OptimConfig
    from sepjax.train.optim import build_optimizer

    optimizer = build_optimizer(OptimConfig(grad_accum=2, warmup_steps=0, schedule="constant"), total_steps=10)
    model = build_model(TINY, key=jax.random.PRNGKey(0))
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(1))
    batch = Batch.from_targets(harmonic_stems(2, 4, 2000, 8000))

    def snapshot(s):
        return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(s.model, eqx.is_inexact_array))]

    history = [snapshot(state)]
    for _ in range(4):
        state, _ = train_step(optimizer, state, batch)
        history.append(snapshot(state))

    def changed(a, b):
        return any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    assert [changed(history[i], history[i + 1]) for i in range(4)] == [False, True, False, True]


def test_plateau_halves_the_updates_after_patient_validation_rounds_without_improvement():
    """Reduce-on-plateau counts validation rounds (not steps) and scales each update by its factor."""
    from sepjax.train.optim import after_validation, current_lr, initial_plateau

    config = OptimConfig(schedule="plateau", plateau_patience=2, warmup_steps=0, lr=1e-3)
    plateau = initial_plateau(config)
    assert initial_plateau(OptimConfig()) is None
    scales = []
    for metric in (5.0, 6.0, 5.5, 5.9, 5.8, 7.0):  # rounds 3 and 4 do not beat 6.0: halve after the second
        plateau = after_validation(config, plateau, metric)
        scales.append(float(plateau.scale))
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
    assert current_lr(config, 100, 10, plateau) == pytest.approx(5e-4)

    model = build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))
    batch = Batch.from_targets(jax.random.normal(jax.random.PRNGKey(1), (2, 4, 1, 2400)) * 0.1)
    optimizer = build_optimizer(config, 100)

    before = eqx.filter(model, eqx.is_inexact_array)

    def update(scale_state):  # the step donates its state: each one starts from its own copy of the model
        fresh = jax.tree.map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, model)
        state = TrainState.create(fresh, optimizer, key=jax.random.PRNGKey(2), plateau=scale_state)
        new, _ = train_step(optimizer, state, batch)
        return jax.tree.map(lambda a, b: a - b, eqx.filter(new.model, eqx.is_inexact_array), before)

    full, halved = update(initial_plateau(config)), update(plateau)
    for a, b, w in zip(jax.tree.leaves(full), jax.tree.leaves(halved), jax.tree.leaves(before), strict=True):
        # Each update is read back as (w + u) − w: float32 rounds it at the weight's scale, 2⁻²⁴·|w| per operation.
        np.testing.assert_allclose(b, 0.5 * a, rtol=1e-5, atol=4 * 2**-24 * float(jnp.max(jnp.abs(w))) + 1e-12)
