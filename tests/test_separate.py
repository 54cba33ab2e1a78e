"""Chunked overlap-add inference: identity round trips, streaming, fixed-shape compilation, files, bundles."""

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from sepjax.cli import DEFAULT_CHUNK_SECONDS, build_parser, chunk_model, inference_config, main
from sepjax.errors import InputError
from sepjax.inference.bundle import BundleError, load_bundle, save_bundle
from sepjax.inference.separate import (
    BatchedModel,
    ChunkPlan,
    InferenceConfig,
    chunk_window,
    denormalize,
    normalize,
    pad_edges,
    separate_array,
    separate_stream,
)
from sepjax.inference.separate_files import DerivedStem
from sepjax.models import build_model, get_config


def identity(stems: int):
    return lambda chunks: np.repeat(chunks[:, None], stems, axis=1)


@pytest.mark.parametrize("window", ["hann", "triangular", "rectangular"])
@pytest.mark.parametrize("padding", ["reflect", "constant", "replicate"])
def test_identity_model_reconstructs_the_input(window, padding):
    rng = np.random.default_rng(0)
    for length in (1, 2, 7, 63, 64, 65, 100, 257, 1000):  # under one chunk, and not multiples of the hop
        for overlap in (0.0, 0.25, 0.5, 0.75):
            x = rng.standard_normal((2, length)).astype(np.float32)
            config = InferenceConfig(chunk=64, overlap=overlap, batch_size=3, window=window, padding=padding)
            y = separate_array(identity(3), x, config)
            assert y.shape == (3, 2, length)
            np.testing.assert_allclose(y, np.broadcast_to(x, y.shape), atol=1e-6)


def test_explicit_hop_and_no_normalisation():
    x = np.random.default_rng(1).standard_normal((1, 500)).astype(np.float32)
    config = InferenceConfig(chunk=50, hop=17, normalize="none", window="triangular")
    np.testing.assert_allclose(separate_array(identity(1), x, config)[0], x, atol=1e-6)


def test_streamed_blocks_equal_one_shot():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3001)).astype(np.float32)
    config = InferenceConfig(chunk=128, overlap=0.5, batch_size=2)

    def model(chunks):  # position-dependent, so misplaced chunks would show
        return np.stack([chunks * np.linspace(0.5, 1.5, chunks.shape[-1]), -chunks], axis=1)

    whole = separate_array(model, x, config)
    _, stats = normalize(x)
    blocks = [x[:, i : i + 333] for i in range(0, 3001, 333)]
    pieces = list(separate_stream(model, blocks, 3001, 2, config, stats))
    assert len(pieces) > 5  # emitted as it went, not at the end
    np.testing.assert_allclose(np.concatenate(pieces, axis=-1), whole, atol=1e-5)


def test_normalisation_is_undone():
    x = (np.random.default_rng(3).standard_normal((2, 400)) * 0.01 + 0.3).astype(np.float32)
    normed, stats = normalize(x)
    assert abs(normed.mean(axis=0).mean()) < 1e-5 and abs(normed.mean(axis=0).std() - 1) < 1e-3
    np.testing.assert_allclose(stats.mean, x.mean(axis=0).mean(), rtol=1e-5)
    np.testing.assert_allclose(denormalize(normed, stats), x, rtol=1e-5)
    seen = []

    def identity(batch):  # one stem: the model's input, as the model saw it
        seen.append(batch)
        return batch[:, None]

    out = separate_array(identity, x, InferenceConfig(chunk=128, overlap=0.5, batch_size=2))
    # The model saw z-scored chunks (mean 0.3 and std 0.01 are gone) and the output is back on the input's scale.
    assert max(abs(float(b.mean())) for b in seen) < 0.5 and 0.5 < float(np.concatenate(seen).std()) < 2
    np.testing.assert_allclose(out[0], x, rtol=1e-5)
    raw = separate_array(identity, x, InferenceConfig(chunk=128, overlap=0.5, batch_size=2, normalize="none"))
    np.testing.assert_allclose(raw[0], x, rtol=1e-5)


def test_chunk_plan_and_padding_modes():
    plan = ChunkPlan.from_overlap(100, 64, 0.5)
    assert (plan.hop, plan.pad_left, plan.num_chunks) == (32, 32, 4)
    assert plan.pad_left + plan.length + plan.pad_right == plan.padded_length
    x = np.arange(1.0, 4.0)[None]
    np.testing.assert_array_equal(pad_edges(x, 2, 2, "reflect"), [[3, 2, 1, 2, 3, 2, 1]])
    np.testing.assert_array_equal(pad_edges(x, 2, 1, "replicate"), [[1, 1, 1, 2, 3, 3]])
    np.testing.assert_array_equal(pad_edges(x, 1, 1, "constant"), [[0, 1, 2, 3, 0]])
    np.testing.assert_array_equal(pad_edges(np.ones((1, 1)), 3, 3, "reflect"), np.ones((1, 7)))
    assert np.all(chunk_window("hann", 16) > 0)
    with pytest.raises((ValueError, TypeError), match="kaiser"):  # beartype rejects it first under pytest
        chunk_window("kaiser", 8)
    with pytest.raises(ValueError, match="empty"):
        ChunkPlan(0, 64, 32)
    with pytest.raises(ValueError, match="overlap"):
        ChunkPlan.from_overlap(10, 64, 1.0)


@pytest.fixture(scope="module")
def tiny():
    return build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))


def test_batched_model_compiles_once_and_pads_the_last_batch(tiny, compiles):
    run = BatchedModel(tiny, batch_size=3)
    x = np.random.default_rng(4).standard_normal((1, 2000)).astype(np.float32)
    config = InferenceConfig(chunk=400, overlap=0.5, batch_size=3)
    y = separate_array(run, x, config)  # 6 chunks: two full batches
    compiled = compiles.count
    z = separate_array(run, x[:, :1500], config)  # 5 chunks: the last batch is padded
    assert y.shape == (4, 1, 2000) and z.shape == (4, 1, 1500)
    assert compiles.count == compiled  # the padded batch reuses the full batches' program
    direct = np.asarray(tiny(jnp.zeros((1, 400))))
    np.testing.assert_allclose(run(np.zeros((1, 1, 400), np.float32))[0], direct, atol=1e-5)


def test_bundle_round_trip_and_mismatch(tmp_path, tiny):
    path = save_bundle(tmp_path / "b", tiny, ["soprano", "alto", "tenor", "bass"], 8000)
    bundle = load_bundle(path)
    assert bundle.stem_names == ("soprano", "alto", "tenor", "bass") and bundle.sample_rate == 8000
    x = jnp.ones((1, 300))
    np.testing.assert_array_equal(np.asarray(bundle.model(x)), np.asarray(tiny(x)))
    with pytest.raises(FileExistsError):
        save_bundle(path, tiny, ["a", "b", "c", "d"], 8000)
    with pytest.raises(BundleError, match="4 stem names|stem names"):
        save_bundle(tmp_path / "c", tiny, ["a"], 8000)
    meta = json.loads((path / "bundle.json").read_text())
    meta["config"]["dim"] = 48
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="weights do not match"):
        load_bundle(path)
    (path / "weights.eqx").unlink()
    with pytest.raises(BundleError, match="missing weights.eqx"):
        load_bundle(path)


def test_batched_model_feeds_the_model_at_its_training_level(tiny):
    chunks = np.random.default_rng(5).standard_normal((2, 1, 400)).astype(np.float32)
    scaled = BatchedModel(tiny, batch_size=2, input_std=0.25)(chunks)
    direct = np.asarray(jax.vmap(tiny)(jnp.asarray(chunks * np.float32(0.25)))) / 0.25
    np.testing.assert_allclose(scaled, direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max())
    unscaled = BatchedModel(tiny, batch_size=2)(chunks)  # the model is not scale-equivariant: the level matters
    assert np.abs(unscaled - scaled).max() > 1e-2 * np.abs(scaled).max()
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(InputError, match="input_std"):
            BatchedModel(tiny, batch_size=2, input_std=bad)


def test_bundle_records_its_training_level_and_the_cli_scales_normalised_inputs_to_it(tmp_path, tiny):
    stems = ["soprano", "alto", "tenor", "bass"]
    recorded = load_bundle(save_bundle(tmp_path / "b", tiny, stems, 8000, input_std=0.3))
    unrecorded = load_bundle(save_bundle(tmp_path / "c", tiny, stems, 8000))
    assert recorded.input_std == 0.3 and unrecorded.input_std == 1.0
    with pytest.raises(BundleError, match="input_std"):
        save_bundle(tmp_path / "d", tiny, stems, 8000, input_std=0.0)
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    (tmp_path / "b" / "bundle.json").write_text(json.dumps({**meta, "input_std": -2.0}))
    with pytest.raises(BundleError, match="input_std must be positive"):
        load_bundle(tmp_path / "b")
    for flags, level in (([], 0.3), (["--normalize", "start"], 0.3), (["--normalize", "none"], 1.0)):
        args = build_parser().parse_args(["evaluate", str(tmp_path / "b"), str(tmp_path), "--layout", "chorales",
                                          "--out", str(tmp_path / "o"), "--chunk-seconds", "0.5",
                                          "--batch-size", "2", *flags])
        assert chunk_model(args, recorded, inference_config(args, recorded)).input_std == level


def test_bundle_records_its_chunk_length_and_separate_defaults_to_it(tmp_path, tiny):
    stems = ["soprano", "alto", "tenor", "bass"]
    recorded = load_bundle(save_bundle(tmp_path / "b", tiny, stems, 8000, chunk_seconds=1.5))
    unrecorded = load_bundle(save_bundle(tmp_path / "c", tiny, stems, 8000))
    assert recorded.chunk_seconds == 1.5 and unrecorded.chunk_seconds is None
    with pytest.raises(BundleError, match="chunk_seconds"):
        save_bundle(tmp_path / "d", tiny, stems, 8000, chunk_seconds=0.0)
    args = build_parser().parse_args(["separate", str(tmp_path / "b"), "x.wav", "--out", str(tmp_path / "o")])
    assert inference_config(args, recorded).chunk == 12000
    assert inference_config(args, unrecorded).chunk == int(DEFAULT_CHUNK_SECONDS * 8000)
    args.chunk_seconds = 0.5
    assert inference_config(args, recorded).chunk == 4000


def test_derive_rules_parse_and_reject_bad_specs():
    rule = DerivedStem.parse("instrumental=mixture-lead_vocal", ("lead_vocal", "bass"))
    assert rule.terms == ((1.0, "mixture"), (-1.0, "lead_vocal"))
    assert DerivedStem.parse("low = bass + lead_vocal", ("lead_vocal", "bass")).name == "low"
    for bad in ("novalue", "x=piano-bass", "x=bass*2"):
        with pytest.raises(ValueError, match="--derive"):
            DerivedStem.parse(bad, ("lead_vocal", "bass"))


def test_separate_cli_files_folders_rates_channels_and_failures(tmp_path, tiny, capsys):
    save_bundle(tmp_path / "bundle", tiny, ["soprano", "alto", "tenor", "bass"], 8000)
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    t = np.arange(22050 * 2) / 22050
    sf.write(inputs / "stereo.wav", np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)], 1) * 0.3,
             22050)
    sf.write(inputs / "sub" / "mono.flac", np.sin(2 * np.pi * 200 * t[:9000]) * 0.3, 8000)
    (inputs / "broken.wav").write_bytes(b"RIFF nonsense")
    sf.write(inputs / "empty.wav", np.zeros((0, 1)), 8000)
    out = tmp_path / "out"
    args = ["separate", str(tmp_path / "bundle"), str(inputs), "--out", str(out), "--chunk-seconds", "0.5",
            "--derive", "low=tenor+bass", "--derive", "rest=mixture-soprano", "--bits", "24"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "empty.wav: empty file" in err
    stereo = out / "stereo"
    assert sorted(p.name for p in stereo.iterdir()) == sorted(
        f"{n}.wav" for n in ("soprano", "alto", "tenor", "bass", "low", "rest"))
    meta = sf.info(stereo / "soprano.wav")
    assert (meta.samplerate, meta.channels, meta.frames, meta.subtype) == (22050, 2, 44100, "PCM_24")
    mono = sf.info(out / "sub" / "mono" / "bass.wav")
    assert (mono.samplerate, mono.channels, mono.frames) == (8000, 1, 9000)
    stems = {n: sf.read(stereo / f"{n}.wav")[0] for n in ("soprano", "tenor", "bass", "low", "rest")}
    mixture = sf.read(inputs / "stereo.wav")[0]
    np.testing.assert_allclose(stems["low"], stems["tenor"] + stems["bass"], atol=1e-4)
    np.testing.assert_allclose(stems["rest"], mixture - stems["soprano"], atol=1e-4)
    assert not [p for p in out.rglob(".*")]  # no staging left behind
    before = (stereo / "soprano.wav").stat().st_mtime_ns
    assert main(args[:5] + ["--chunk-seconds", "0.5"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (stereo / "soprano.wav").stat().st_mtime_ns == before


def test_separate_cli_bad_bundle_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    assert main(["separate", str(tmp_path / "b"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "missing bundle.json" in capsys.readouterr().err


def test_output_names_from_inputs_never_leave_or_replace_the_output_folder(tmp_path, tiny, capsys):
    save_bundle(tmp_path / "bundle", tiny, ["soprano", "alto", "tenor", "bass"], 8000)
    parent = tmp_path / "P"
    (parent / "keep").mkdir(parents=True)
    (parent / "keep" / "precious.txt").write_text("not to be lost")
    out = parent / "out"
    (out / "earlier").mkdir(parents=True)
    (out / "earlier" / "soprano.wav").write_text("an earlier result")
    dots = tmp_path / "dots"
    (dots / "sub").mkdir(parents=True)
    tone = (np.sin(np.arange(4000) / 5) * 0.3).astype(np.float32)
    # "...wav" would name its output "..", "..wav" would name it "." (the output folder itself).
    for name in ("...wav", "..wav", "....wav", "a\\b.wav", "good.wav", "sub/good.wav"):
        sf.write(dots / name, tone, 8000, format="WAV")
    twin = tmp_path / "twin"
    twin.mkdir()
    sf.write(twin / "good.wav", tone, 8000)  # the same output name as dots/good.wav
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    sf.write(nested / "sub.wav", tone, 8000)  # out/sub/ would hold out/sub/good/ as well
    args = ["separate", str(tmp_path / "bundle"), str(dots), str(twin / "good.wav"), str(nested / "sub.wav"),
            "--out", str(out), "--chunk-seconds", "0.25", "--overwrite"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{dots / '...wav'}: its output name '..' does not name a folder inside {out}" in err
    assert f"{dots / '..wav'}: its output name '.' does not name a folder" in err
    assert f"{dots / '....wav'}: its output name '...'" in err
    assert f"{twin / 'good.wav'}: its output folder good clashes with that of {dots / 'good.wav'}" in err
    assert f"{nested / 'sub.wav'}: its output folder sub clashes with that of {dots / 'sub' / 'good.wav'}" in err
    assert (parent / "keep" / "precious.txt").read_text() == "not to be lost"
    assert (out / "earlier" / "soprano.wav").read_text() == "an earlier result"  # --overwrite replaced only its own
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()) == [
        "a\\b", "earlier", "good", "sub", "sub/good"]
    assert sorted(p.name for p in (out / "good").iterdir()) == [f"{n}.wav" for n in ("alto", "bass", "soprano",
                                                                                      "tenor")]
    link = out / "elsewhere"
    link.symlink_to(parent / "keep")
    from sepjax.inference.separate_files import output_folder

    with pytest.raises(InputError, match="resolves to .*outside"):
        output_folder(out, Path("elsewhere"), Path("elsewhere.wav"))
    for bad in ("/abs/name", ".", "..", "x/../..", ""):
        with pytest.raises(InputError, match="does not name a folder"):
            output_folder(out, Path(bad), Path("input.wav"))


def test_a_bundle_with_non_finite_weights_fails_each_file_and_writes_nothing(tmp_path, tiny, capsys):
    broken = jax.tree.map(lambda x: x * np.nan if eqx.is_inexact_array(x) else x, tiny)
    save_bundle(tmp_path / "nan", broken, ["soprano", "alto", "tenor", "bass"], 8000)
    sf.write(tmp_path / "song.wav", (np.sin(np.arange(4000) / 5) * 0.3).astype(np.float32), 8000)
    out = tmp_path / "out"
    assert main(["separate", str(tmp_path / "nan"), str(tmp_path / "song.wav"), "--out", str(out),
                 "--chunk-seconds", "0.25"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'song.wav'}: the model's output holds NaN or infinite samples" in err
    assert not out.exists() or not any(out.iterdir())
