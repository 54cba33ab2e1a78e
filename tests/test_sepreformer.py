"""The paper's SepReformer: stage shapes, auxiliary heads, BatchNorm train/eval state, parameter counts,
gradients, overfitting, and the `sepjax train` → bundle → `sepjax separate` path."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import soundfile as sf
from fixtures import make_2mix
from jaxtyping import Array

from sepjax.cli import main
from sepjax.data.synthetic import harmonic_stems
from sepjax.inference.bundle import load_bundle
from sepjax.losses import CompositeLossConfig, aux_loss_weight, multi_loss, si_sdr, snr
from sepjax.models import (
    MODEL_CONFIGS,
    SepReformer,
    build_model,
    count_params,
    get_config,
    parameters,
    trainable,
)
from sepjax.models.sepreformer.stages import SpeakerSplit
from sepjax.train import Batch, TrainState, make_optimizer, overfit_one_batch, train_step
from sepjax.train.checkpoint import Checkpointer
from sepjax.train.cli import load_experiment
from sepjax.train.optim import build_optimizer, initial_plateau
from sepjax.train.step import batch_loss, training_forward

TINY = get_config("sepreformer-tiny")
SMALL = TINY.replace(num_stages=1)  # one stage keeps compiles short where depth does not matter


@pytest.fixture(autouse=True)
def standard_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats with int32 counts
        yield


@pytest.fixture(scope="module")
def tiny():
    return build_model(TINY, key=jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def small():
    return build_model(SMALL, key=jax.random.PRNGKey(0))


def test_every_stage_has_the_papers_shape(tiny):
    # The stage-by-stage asserts run while tracing; nothing is computed.
    decoded = eqx.filter_eval_shape(check_stage_shapes, tiny, jnp.zeros((1, 2001)))
    frames = (2001 - TINY.encoder_kernel) // TINY.encoder_stride + 1
    assert decoded.shape == (TINY.num_stems, -(-frames // 4) * 4, TINY.dim)


def check_stage_shapes(model: SepReformer, mixture: Array) -> Array:
    net, state = model.network, model.stats
    c = TINY
    encoded = net.encoder(mixture)
    frames = (2001 - c.encoder_kernel) // c.encoder_stride + 1
    assert encoded.shape == (frames, c.encoder_channels)
    padded = -(-frames // 2**c.num_stages) * 2**c.num_stages
    h = jnp.pad(net.project_norm(encoded) @ net.project.weight.T, [(0, padded - frames), (0, 0)])
    positions = net.positions(padded // 2**c.num_stages)
    assert positions.shape == (padded // 4, padded // 4, c.dim // c.heads)
    skips = []
    for i, stage in enumerate(net.enc_stages):
        h, skip, state = stage(h, positions, state, inference=True)
        assert skip.shape == (padded // 2**i, c.dim) and h.shape == (padded // 2 ** (i + 1), c.dim)
        skips.append(net.split(i)(skip))
        assert skips[-1].shape == (c.num_stems, padded // 2**i, c.dim)
    h, skip, state = net.bottleneck(h, positions, state, inference=True)
    assert h.shape == skip.shape == (padded // 4, c.dim)
    h = net.split(c.num_stages)(h)
    for i, stage in enumerate(net.dec_stages):
        h, state = stage(h, skips[-1 - i], positions, state, inference=True)
        assert h.shape == (c.num_stems, padded // 2 ** (c.num_stages - 1 - i), c.dim)
    return h


def infer(model, x):
    return eqx.filter_jit(lambda m, x: jax.vmap(m)(x))(model, x)


@pytest.mark.parametrize("length", [16, 2001])
def test_output_length_equals_input_length(tiny, length):
    x = jax.random.normal(jax.random.PRNGKey(length), (1, 1, length)) * 0.1
    out = infer(tiny, x)
    assert out.shape == (1, 2, 1, length) and bool(jnp.all(jnp.isfinite(out)))


def test_aux_heads_only_in_training(tiny):
    length = 333
    x = jnp.zeros((1, length))
    estimates, aux, _ = eqx.filter_eval_shape(training_forward, tiny, jnp.stack([x, x]), None)
    assert estimates.shape == (2, 2, 1, length)
    assert aux.shape == (2, TINY.num_stages, 2, 1, length)
    _, aux, _ = eqx.filter_eval_shape(lambda m, x: m.network(x, m.stats, inference=True), tiny, x)
    assert aux is None
    no_heads = eqx.filter_eval_shape(SepReformer, TINY.replace(aux_heads=False), key=jax.random.PRNGKey(0))
    assert eqx.filter_eval_shape(training_forward, no_heads, jnp.stack([x, x]), None)[1] is None


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_in_eval(small):
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 1, 800)) * 0.1
    forward = eqx.filter_jit(training_forward)
    first, _, stats = forward(small, x, None)
    changed, _, _ = forward(small, x.at[2].multiply(5.0), None)
    assert not np.allclose(first[0], changed[0], atol=1e-6)  # example 0 sees example 2 through the batch stats
    np.testing.assert_allclose(infer(small, x)[0], infer(small, x.at[2].multiply(5.0))[0], atol=1e-6)  # eval
    before = jax.tree.leaves(small.stats)
    after = jax.tree.leaves(stats)
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    updated = small.with_stats(stats)
    assert not np.allclose(infer(small, x), infer(updated, x))


def test_group_norm_variant_is_stateless_and_the_same_in_train_and_eval():
    model = build_model(SMALL.replace(norm="group"), key=jax.random.PRNGKey(0))
    assert jax.tree.leaves(model.stats) == []
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 600)) * 0.1
    trained, _, _ = eqx.filter_jit(training_forward)(model, x, None)
    np.testing.assert_allclose(trained, infer(model, x), atol=1e-6)


def test_parameter_counts_match_the_paper():
    # The official code's counts (paper: 3.71M, 14.15M, 55.2M), as the README prints them.
    exact = {"sepreformer-t": 3_711_488, "sepreformer-b": 14_147_840, "sepreformer-l": 55_222_016}
    for name, expected in exact.items():
        config = get_config(name, aux_heads=False)
        shapes = eqx.filter_eval_shape(SepReformer, config, key=jax.random.PRNGKey(0))
        assert count_params(shapes) == expected, name
    assert MODEL_CONFIGS["sepreformer-l"].shared_split and MODEL_CONFIGS["sepreformer-l"].dropout == 0.1
    per_stage = eqx.filter_eval_shape(SepReformer, get_config("sepreformer-t", shared_split=False),
                                      key=jax.random.PRNGKey(0))
    assert len(per_stage.network.splits) == 5
    t_with_heads = eqx.filter_eval_shape(SepReformer, get_config("sepreformer-t"), key=jax.random.PRNGKey(0))
    with_heads = count_params(t_with_heads)
    assert with_heads == 3_926_528


def test_split_layer_streams_are_normalised_per_stem():
    split = SpeakerSplit(8, 3, key=jax.random.PRNGKey(0))
    streams = split(jax.random.normal(jax.random.PRNGKey(1), (20, 8)) * 4 + 2)
    assert streams.shape == (3, 20, 8)
    np.testing.assert_allclose(streams.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(streams.std(axis=(1, 2)), 1, atol=1e-3)


def test_train_step_gradients_are_finite_and_stats_update_with_dropout_and_snake():
    config = SMALL.replace(dropout=0.1, activation="snake")
    model = build_model(config, key=jax.random.PRNGKey(0))
    assert model.network.enc_stages[0].down.act.snake is not None
    optimizer = make_optimizer(1e-3)
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(1), ema=True)
    batch = Batch.from_targets(harmonic_stems(2, 2, 1200, 8000, seed=0))
    new, metrics = train_step(optimizer, state, batch, CompositeLossConfig(stft_weight=0.0), ema_decay=0.9)
    assert np.isfinite(float(metrics["grad_norm"])) and int(metrics["skipped"]) == 0
    assert {"main_loss", "aux_loss", "aux_weight"} <= set(metrics)
    np.testing.assert_allclose(float(metrics["loss"]),
                               0.6 * float(metrics["main_loss"]) + 0.4 * float(metrics["aux_loss"]), rtol=1e-5)
    counters = [int(x) for x in jax.tree.leaves(new.model.stats) if x.dtype == jnp.int32]
    assert counters and set(counters) == {1}
    assert [int(x) for x in jax.tree.leaves(new.ema.stats) if x.dtype == jnp.int32] == counters


def loss_and_grads(model: SepReformer, batch: Batch, key: Array | None = None):
    params, frozen = eqx.partition(model, trainable(model))

    def loss_of(p):
        return batch_loss(eqx.combine(p, frozen), batch, key, CompositeLossConfig(stft_weight=0.0), 0.4)

    (loss, (_, stats)), grads = eqx.filter_jit(jax.value_and_grad(loss_of, has_aux=True))(params)
    return loss, grads, stats


def test_remat_gives_the_same_loss_gradients_and_stats():
    batch = Batch.from_targets(harmonic_stems(2, 2, 900, 8000, seed=4))
    config = SMALL.replace(aux_heads=False)
    plain = build_model(config, key=jax.random.PRNGKey(0))
    remat = build_model(config.replace(remat=True), key=jax.random.PRNGKey(0))
    (loss, grads, stats), (loss_r, grads_r, stats_r) = loss_and_grads(plain, batch), loss_and_grads(remat, batch)
    np.testing.assert_allclose(loss_r, loss, rtol=1e-5)
    # Float32 rounding noise scales with the largest gradient (some leaves, e.g. biases ahead of a BatchNorm, are
    # zero up to that noise), so the absolute tolerance does too.
    noise = 1e-7 * max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads))
    for g_r, g in zip(jax.tree.leaves(grads_r), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(g_r, g, rtol=1e-4, atol=noise)
    for s_r, s in zip(jax.tree.leaves(stats_r), jax.tree.leaves(stats), strict=True):
        np.testing.assert_allclose(s_r, s, rtol=1e-5, atol=1e-7)


def test_scanned_stages_equal_unrolled_ones_in_loss_gradients_stats_and_inference():
    """Each stage's repeated blocks run as one lax.scan (stacked when traced, BatchNorm statistics carried
    through the scan); applied one by one they give the same values, in training mode with dropout too."""
    batch = Batch.from_targets(harmonic_stems(2, 2, 900, 8000, seed=5))
    config = TINY.replace(dropout=0.1)
    scanned = build_model(config, key=jax.random.PRNGKey(0))
    unrolled = build_model(config.replace(unroll=True), key=jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(7)
    (loss, grads, stats), (loss_u, grads_u, stats_u) = (loss_and_grads(scanned, batch, key),
                                                        loss_and_grads(unrolled, batch, key))
    np.testing.assert_allclose(loss, loss_u, rtol=1e-5)
    noise = 1e-7 * max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads_u))  # as in the remat test
    for g, g_u in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_u), strict=True):
        np.testing.assert_allclose(g, g_u, rtol=1e-4, atol=noise)
    moved = 0
    for s, s_u, s0 in zip(jax.tree.leaves(stats), jax.tree.leaves(stats_u), jax.tree.leaves(unrolled.stats),
                          strict=True):
        np.testing.assert_allclose(s, s_u, rtol=1e-5, atol=1e-7)
        moved += not np.array_equal(s_u, s0)
    assert moved == len(jax.tree.leaves(stats_u))  # every running statistic and counter was updated
    mixture = batch.mixture
    np.testing.assert_allclose(jax.vmap(scanned)(mixture), jax.vmap(unrolled)(mixture), rtol=1e-5, atol=1e-6)

    def lowered(model):
        return eqx.filter_jit(lambda m, x: jax.vmap(m)(x)).lower(model, mixture).as_text()

    # Per stage: 1 while loop for the encoder stages and the bottleneck, 1 for each decoder stage.
    assert lowered(scanned).count("stablehlo.while") == 2 * TINY.num_stages + 1
    assert "stablehlo.while" not in lowered(unrolled)


def test_bfloat16_compute_keeps_float32_parameters_and_tracks_float32():
    batch = Batch.from_targets(harmonic_stems(2, 2, 900, 8000, seed=5))
    full = build_model(SMALL, key=jax.random.PRNGKey(0))
    half = build_model(SMALL.replace(dtype="bfloat16"), key=jax.random.PRNGKey(0))
    assert {x.dtype for x in jax.tree.leaves(parameters(half))} == {jnp.dtype(jnp.float32)}
    out_full, out_half = infer(full, batch.mixture), infer(half, batch.mixture)
    assert out_half.dtype == jnp.float32
    agreement = float(jnp.mean(snr(out_half, out_full)))
    print(f"bf16 vs float32 output SNR: {agreement:.1f} dB")
    assert 15.0 < agreement < 80.0, agreement  # bf16 rounding is visible, but small
    loss, grads, stats = loss_and_grads(half, batch)
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(grads)
    assert {g.dtype for g in leaves} == {jnp.dtype(jnp.float32)}
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves) and float(optax.tree.norm(grads)) > 0
    float_stats = {s.dtype for s in jax.tree.leaves(stats) if jnp.issubdtype(s.dtype, jnp.floating)}
    assert float_stats == {jnp.dtype(jnp.float32)}


def test_aux_weight_schedule_and_multi_loss():
    config = CompositeLossConfig(aux_weight=0.4, aux_decay_start=100, aux_decay_every=5)
    assert float(aux_loss_weight(99, config)) == pytest.approx(0.4)
    assert float(aux_loss_weight(100, config)) == pytest.approx(0.32)
    assert float(aux_loss_weight(104, config)) == pytest.approx(0.32)
    assert float(aux_loss_weight(105, config)) == pytest.approx(0.256)
    assert float(aux_loss_weight(10**6, CompositeLossConfig())) == pytest.approx(0.4)
    targets = jnp.asarray(harmonic_stems(1, 2, 2400, 8000, seed=1))
    estimates = targets + 0.1
    aux = jnp.stack([targets + 0.3, targets - 0.2], axis=1)
    plain = CompositeLossConfig(stft_weight=0.0)
    loss, terms = multi_loss(estimates, aux, targets, None, plain, 0.25)
    main_loss = multi_loss(estimates, None, targets, None, plain, 0.25)[0]
    heads = [multi_loss(aux[:, h], None, targets, None, plain, 0.0)[0] for h in range(2)]
    assert float(loss) == pytest.approx(0.75 * float(main_loss) + 0.25 * (float(heads[0]) + float(heads[1])) / 2,
                                        rel=1e-5)


def test_tiny_model_overfits_one_batch_by_10_db():
    targets = harmonic_stems(2, 2, 2000, 8000, seed=3)
    batch = Batch.from_targets(targets)
    model = build_model(SMALL, key=jax.random.PRNGKey(0))
    speech_loss = CompositeLossConfig(stft_weight=0.0, si_sdr_cap_db=30.0)
    model, history = overfit_one_batch(model, batch, steps=50, lr=3e-3, loss_config=speech_loss)
    estimates = infer(model, batch.mixture)  # eval mode: running BatchNorm statistics
    final = float(jnp.mean(si_sdr(estimates, batch.targets)))
    mixture = float(jnp.mean(si_sdr(jnp.broadcast_to(batch.mixture[:, None], batch.targets.shape), batch.targets)))
    assert final - mixture >= 10.0, (final, mixture)
    assert history.gain_db >= 10.0


EXPERIMENT = Path(__file__).parents[1] / "experiments" / "wsj0_2mix_paper_sepreformer.py"
SMALL_FLAGS = ["--model.dim", "16", "--model.num-stages", "1", "--model.heads", "2", "--model.encoder-channels", "32",
              "--model.local-kernel", "15", "--model.max-relative-position", "64", "--model.dropout", "0.0"]


def test_trains_through_sepjax_train_checkpoints_and_separates_from_its_bundle(tmp_path, capsys):
    root = make_2mix(tmp_path / "2mix")
    run = tmp_path / "run"
    code = main(["train", str(EXPERIMENT), *SMALL_FLAGS, "--data.root", str(root),
                 "--data.segment-seconds", "0.5", "--data.num-workers", "0", "--data.valid-tracks", "1",
                 "--train.steps", "2", "--train.checkpoint-every", "2", "--train.valid-every", "2",
                 "--train.chunk-seconds", "0.5", "--train.run-dir", str(run), "--log.log-every", "1",
                 "--log.no-progress"])
    assert code == 0
    assert "model bundle:" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["family"] == "sepreformer" and saved["model"]["dim"] == 16
    experiment = load_experiment(EXPERIMENT).CONFIG
    optim = experiment.optim
    assert experiment.loss.aux_loss == "stft_magnitude_si_snr"  # the paper's auxiliary loss, trained here
    assert optim.schedule == "plateau"  # the paper's recipe: the checkpoint holds the plateau's state too
    template = TrainState.create(build_model(SMALL, key=jax.random.PRNGKey(5)), build_optimizer(optim, 2),
                                 key=jax.random.PRNGKey(0), plateau=initial_plateau(optim))
    restored = Checkpointer(run / "checkpoints").restore(template, None)
    counters = [int(x) for x in jax.tree.leaves(restored.model.stats) if x.dtype == jnp.int32]
    assert int(restored.step) == 2 and set(counters) == {2}  # BatchNorm statistics saved with the step
    bundle = load_bundle(run / "bundle")
    assert isinstance(bundle.model, SepReformer) and bundle.config == SMALL
    for a, b in zip(jax.tree.leaves(bundle.model.stats), jax.tree.leaves(restored.model.stats), strict=True):
        np.testing.assert_array_equal(a, b)
    mixture = np.random.default_rng(0).standard_normal(5000) * 0.1
    sf.write(tmp_path / "mix.wav", mixture, 8000)
    assert main(["separate", str(run / "bundle"), str(tmp_path / "mix.wav"), "--out", str(tmp_path / "out"),
                 "--chunk-seconds", "0.5"]) == 0
    outputs = sorted(p.name for p in (tmp_path / "out" / "mix").iterdir())
    assert outputs == [f"{s}.wav" for s in sorted(bundle.stem_names)]
    assert sf.info(tmp_path / "out" / "mix" / outputs[0]).frames == 5000
