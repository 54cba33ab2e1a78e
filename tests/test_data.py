"""Data layer: indexes for every layout, caching, segment reads, the grain pipeline, augmentations."""

import os

import librosa
import numpy as np
import pytest
import soundfile as sf
from fixtures import make_2mix, make_jacappella, make_musdb, make_stems, tone, write_track

from sepjax.audio import AudioError, read, read_segment, resample, write
from sepjax.data.augment import AugmentConfig, augment_stems
from sepjax.data.index import build_index
from sepjax.data.layouts import LayoutError, get_layout
from sepjax.data.pipeline import PipelineConfig, SegmentSampler, input_level, training_dataset
from sepjax.errors import InputError


def take(it, n):
    return [next(it) for _ in range(n)]


def test_jacappella_index_splits_missing_and_extra_stems(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    by_id = {t.track_id: t for t in index.tracks}
    assert sorted(by_id) == ["jazz/song_c", "jazz/song_d", "pop/song_a", "pop/song_b"]
    assert by_id["jazz/song_c"].split == "test" and by_id["pop/song_a"].split == "train"
    assert "alto" not in by_id["pop/song_b"].stems
    assert "finger_snap" in by_id["jazz/song_d"].stems and "finger_snap" not in index.stems
    assert "mixture" not in by_id["jazz/song_d"].stems
    track = by_id["pop/song_a"]
    assert (track.sample_rate, track.frames, track.channels) == (48000, 72000, 1)
    assert index.stems[:5] == ("lead_vocal", "soprano", "alto", "tenor", "bass")


def test_jacappella_accepts_any_test_list_file(tmp_path):
    root = make_jacappella(tmp_path / "jc")
    (tmp_path / "mine.txt").write_text("song_a\nsong_b\n")
    index = build_index(root, get_layout("jacappella", test_list=str(tmp_path / "mine.txt")), use_cache=False)
    assert sorted(t.track_id for t in index.split("test")) == ["pop/song_a", "pop/song_b"]


def test_musdb_index_is_stereo_with_the_validation_subset(tmp_path):
    index = build_index(make_musdb(tmp_path / "musdb"), get_layout("musdb"))
    splits = {t.track_id: t.split for t in index.tracks}
    assert splits == {"train/Track One": "train", "train/Leaf - Summerghost": "valid", "test/Track Three": "test"}
    assert all(t.channels == 2 and t.sample_rate == 44100 for t in index.tracks)
    assert index.stems == ("vocals", "drums", "bass", "other")


def test_stems_and_2mix_layouts(tmp_path):
    stems = build_index(make_stems(tmp_path / "s"), get_layout("stems", stems=("vocals", "accompaniment")))
    assert [t.split for t in stems.tracks] == ["train", "train", "test"]
    assert set(stems.tracks[0].stems) == {"vocals", "accompaniment"}
    mix = build_index(make_2mix(tmp_path / "w"), get_layout("2mix"))
    assert sorted({t.split for t in mix.tracks}) == ["test", "train", "valid"]
    assert len(mix.tracks) == 6 and set(mix.tracks[0].stems) == {"s1", "s2"}
    with pytest.raises(LayoutError, match="needs the stem names"):
        get_layout("stems")


def test_index_cache_is_reused_and_invalidated_by_size_or_mtime(tmp_path, monkeypatch):
    root = make_jacappella(tmp_path / "jc")
    layout = get_layout("jacappella")
    first = build_index(root, layout)
    assert (root / ".sepjax-index-jacappella.json").exists()

    def no_decoding(path, stream=None):
        raise AssertionError(f"cache miss read {path}")

    monkeypatch.setattr("sepjax.data.index.info", no_decoding)
    assert build_index(root, layout).tracks == first.tracks
    monkeypatch.undo()
    target = root / "pop/song_a/soprano.wav"
    sf.write(target, tone(2.0, 48000, 523), 48000, subtype="FLOAT")  # new size
    rebuilt = build_index(root, layout)
    assert rebuilt.skipped and "pop/song_a" in rebuilt.skipped[0]  # now unequal lengths
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, new mtime
    monkeypatch.setattr("sepjax.data.index.info", no_decoding)
    with pytest.raises(AssertionError, match="cache miss"):
        build_index(root, layout)


def test_bad_files_are_skipped_and_named(tmp_path):
    root = make_jacappella(tmp_path / "jc")
    (root / "pop/song_a/alto.wav").write_bytes(b"not audio at all")
    sf.write(root / "jazz/song_c/bass.wav", tone(1.5, 44100, 131), 44100)
    index = build_index(root, get_layout("jacappella"), use_cache=False)
    assert {t.track_id for t in index.tracks} == {"pop/song_b", "jazz/song_d"}
    joined = "\n".join(index.skipped)
    assert "alto.wav" in joined and "not readable" in joined
    assert "jazz/song_c" in joined and "different sample rates" in joined


def test_expected_sample_rate_and_empty_or_unknown_roots(tmp_path):
    root = make_jacappella(tmp_path / "jc")
    with pytest.raises(LayoutError, match="no usable tracks.*expected 16000 Hz"):
        build_index(root, get_layout("jacappella"), expected_sample_rate=16000, use_cache=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no tracks found"):
        build_index(tmp_path / "empty", get_layout("musdb"))
    with pytest.raises(LayoutError, match="unknown layout 'foo'"):
        get_layout("foo")
    with pytest.raises(AudioError, match="nope.wav"):
        read(tmp_path / "nope.wav")


def test_segment_read_equals_slice_of_full_decode(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(2.0, 16000, 300, channels=2), 16000, subtype="FLOAT")
    full, _ = read(path)
    segment = read_segment(path, 0.5, 8000, 16000, channels=2)
    np.testing.assert_array_equal(segment, full[:, 8000:16000])
    mono = read_segment(path, 0.5, 8000, 16000, channels=1)
    np.testing.assert_allclose(mono[0], full[:, 8000:16000].mean(axis=0), atol=1e-7)
    tail = read_segment(path, 1.9, 4000, 16000, channels=2)
    np.testing.assert_array_equal(tail[:, 1600:], 0)


def test_resampling_keeps_pitch_and_matches_librosa(tmp_path):
    path = tmp_path / "x.wav"
    sf.write(path, tone(1.0, 48000, 440), 48000, subtype="FLOAT")
    full, _ = read(path)
    out = read_segment(path, 0.25, 8000, 16000, channels=1)
    expected = librosa.resample(full, orig_sr=48000, target_sr=16000, res_type="soxr_hq")[:, 4000:12000]
    np.testing.assert_allclose(out[:, 200:-200], expected[:, 200:-200], atol=2e-3)
    spectrum = np.abs(np.fft.rfft(out[0] * np.hanning(8000)))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2
    np.testing.assert_array_equal(resample(full, 48000, 48000), full)


def test_write_is_atomic_and_never_overwrites_silently(tmp_path):
    target = tmp_path / "out" / "a.wav"
    write(target, np.zeros((1, 100), np.float32), 8000)
    with pytest.raises(FileExistsError, match="a.wav exists"):
        write(target, np.ones((1, 100), np.float32), 8000)
    write(target, np.full((1, 100), 0.5, np.float32), 8000, overwrite=True, bits="24")
    assert read(target)[0][0, 0] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(AudioError, match="non-finite"):
        write(tmp_path / "nan.wav", np.full((1, 10), np.nan, np.float32), 8000)
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.wav"]


def jc_config(**kw):
    base = dict(sample_rate=16000, segment_seconds=0.5, batch_size=2, shard_index=0, shard_count=1)
    return PipelineConfig(**{**base, **kw})


def test_batches_have_masks_for_missing_stems_and_mixture_is_the_sum(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    sampler = SegmentSampler(index.split("train"), index.stems, jc_config())
    song_b = next(t for t in index.tracks if t.track_id == "pop/song_b")
    example = sampler(song_b, np.random.default_rng(0))
    alto = index.stems.index("alto")
    assert example["mask"][alto] == 0 and not example["targets"][alto].any()
    assert example["mask"][index.stems.index("soprano")] == 1
    assert example["mask"][index.stems.index("vocal_percussion")] == 0
    np.testing.assert_allclose(example["mixture"], example["targets"].sum(axis=0), atol=1e-6)
    batch = next(iter(training_dataset(index, jc_config())))
    assert batch["targets"].shape == (2, 6, 1, 8000) and batch["mask"].shape == (2, 6)


def test_same_seed_same_batches_and_other_seed_differs(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    aug = AugmentConfig(gain_db=(-6.0, 6.0), remix_prob=0.5)
    a = take(iter(training_dataset(index, jc_config(augment=aug))), 3)
    b = take(iter(training_dataset(index, jc_config(augment=aug))), 3)
    c = take(iter(training_dataset(index, jc_config(augment=aug, seed=1))), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["targets"], y["targets"])
    assert not all(np.array_equal(x["targets"], z["targets"]) for x, z in zip(a, c, strict=True))


def test_restored_iterator_state_gives_the_same_next_batches(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    config = jc_config(augment=AugmentConfig(remix_prob=0.5, subset_prob=0.5))
    it = iter(training_dataset(index, config))
    take(it, 3)
    state = it.get_state()
    expected = take(it, 3)
    resumed = iter(training_dataset(index, config))
    resumed.set_state(state)
    for x, y in zip(expected, take(resumed, 3), strict=True):
        np.testing.assert_array_equal(x["mixture"], y["mixture"])


def test_worker_processes_give_the_same_batches(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    local = take(iter(training_dataset(index, jc_config())), 2)
    workers = take(iter(training_dataset(index, jc_config(num_workers=2))), 2)
    for x, y in zip(local, workers, strict=True):
        np.testing.assert_array_equal(x["targets"], y["targets"])


def test_process_shards_see_different_examples(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    first = next(iter(training_dataset(index, jc_config(shard_index=0, shard_count=2))))
    second = next(iter(training_dataset(index, jc_config(shard_index=1, shard_count=2))))
    assert not np.array_equal(first["targets"], second["targets"])


def pipeline_batches(index, augment, count=3):
    config = PipelineConfig(sample_rate=22050, segment_seconds=0.4, batch_size=2, channels=2, augment=augment,
                            shard_index=0, shard_count=1)
    return take(iter(training_dataset(index, config)), count)


def find_offset(segment, audio):
    """The sample offset at which `segment` (C, t) occurs exactly in `audio` (C, T), which reads zero-padded past
    its end as `read_segment` does; else None."""
    length = segment.shape[-1]
    audio = np.pad(audio, ((0, 0), (0, length)))
    for offset in np.flatnonzero(audio[0, : audio.shape[-1] - length + 1] == segment[0, 0]):
        if np.array_equal(audio[:, offset : offset + length], segment):
            return int(offset)
    return None


@pytest.fixture
def musdb_index(tmp_path):
    return build_index(make_musdb(tmp_path / "musdb", sample_rate=22050), get_layout("musdb"))


def test_pipeline_augmentations_transform_the_segments_they_read(musdb_index):
    # The segment positions are drawn before the augmentations, so the same seed reads the same raw segments.
    plain = pipeline_batches(musdb_index, AugmentConfig())
    for batch in plain:
        assert batch["mask"].all()
    exact = {"swap": (AugmentConfig(channel_swap_prob=1.0), lambda raw: raw[:, :, ::-1]),
             "flip": (AugmentConfig(polarity_flip_prob=1.0), lambda raw: -raw)}
    for augment, transform in exact.values():
        for raw, batch in zip(plain, pipeline_batches(musdb_index, augment), strict=True):
            np.testing.assert_array_equal(batch["targets"], transform(raw["targets"]))
    low, high = 10 ** (-9 / 20), 10 ** (9 / 20)
    gains = []
    for raw, batch in zip(plain, pipeline_batches(musdb_index, AugmentConfig(gain_db=(-9.0, 9.0))), strict=True):
        ratio = batch["targets"] / raw["targets"]
        per_stem = ratio[..., :1, :1]  # one gain per stem: the same ratio at every sample and channel
        np.testing.assert_allclose(ratio, np.broadcast_to(per_stem, ratio.shape), rtol=1e-6)
        assert np.all((per_stem > low * (1 - 1e-6)) & (per_stem < high * (1 + 1e-6)))
        gains.extend(per_stem.ravel())
    assert np.ptp(20 * np.log10(gains)) > 3.0  # drawn, not one constant
    dropped = 0
    for raw, batch in zip(plain, pipeline_batches(musdb_index, AugmentConfig(subset_prob=1.0)), strict=True):
        assert batch["mask"].all()  # a dropped stem is a silent target, still scored
        for raw_example, example in zip(raw["targets"], batch["targets"], strict=True):
            kept = [bool(np.any(stem)) for stem in example]
            assert any(kept)
            dropped += kept.count(False)
            for stem, raw_stem, keep in zip(example, raw_example, kept, strict=True):
                np.testing.assert_array_equal(stem, raw_stem if keep else np.zeros_like(raw_stem))
    assert dropped > 0
    for batch in pipeline_batches(musdb_index, AugmentConfig(gain_db=(-9.0, 9.0), subset_prob=1.0)):
        np.testing.assert_allclose(batch["mixture"], batch["targets"].sum(axis=1), atol=1e-6)


def test_shift_reads_each_stem_from_its_own_position(musdb_index):
    files = {(t.track_id, s): sf.read(t.stems[s].path, dtype="float32", always_2d=True)[0].T
             for t in musdb_index.split("train") for s in musdb_index.stems}
    shift = int(0.2 * 22050)
    offsets_differ = False
    for batch in pipeline_batches(musdb_index, AugmentConfig(max_shift_seconds=0.2)):
        for example in batch["targets"]:
            # Each stem is an exact read of one train track's stem; within an example, the positions differ by
            # at most twice the maximum shift.
            found = {}
            for name, stem in zip(musdb_index.stems, example, strict=True):
                hits = {track: find_offset(stem, files[track, name]) for track, s in files if s == name}
                hits = {track: offset for track, offset in hits.items() if offset is not None}
                assert len(hits) == 1, name
                found[name] = next(iter(hits.items()))
            assert len({track for track, _ in found.values()}) == 1  # shift keeps the track
            positions = [offset for _, offset in found.values()]
            assert max(positions) - min(positions) <= 2 * shift
            offsets_differ |= len(set(positions)) > 1
    assert offsets_differ


def test_remix_reads_stems_from_other_tracks(tmp_path):
    root = tmp_path / "stems"
    for i, name in enumerate(["t1", "t2", "t3"]):  # every stem of every track distinct
        write_track(root / name, {"vocals": tone(1.0, 22050, 300 + 50 * i, seed=i),
                                  "accompaniment": tone(1.0, 22050, 80 + 10 * i, seed=10 + i)}, 22050, mixture=False)
    (root / "test_list.txt").write_text("t3\n")
    index = build_index(root, get_layout("stems", stems=("vocals", "accompaniment")))
    train_tracks = index.split("train")
    assert len(train_tracks) == 2
    files = {(t.track_id, s): sf.read(t.stems[s].path, dtype="float32", always_2d=True)[0].T
             for t in train_tracks for s in index.stems}
    mixed_tracks = False
    for batch in pipeline_batches(index, AugmentConfig(remix_prob=1.0), count=4):
        for example in batch["targets"]:
            sources = set()
            for name, stem in zip(index.stems, example, strict=True):
                hits = [track for track, s in files if s == name
                        and find_offset(stem, np.repeat(files[track, name], len(stem), axis=0)) is not None]
                assert len(hits) == 1, name
                sources.add(hits[0])
            mixed_tracks |= len(sources) > 1
    assert mixed_tracks


def test_each_augmentation_does_what_it_says():
    rng = np.random.default_rng(0)
    stems = rng.standard_normal((3, 2, 50)).astype(np.float32)
    mask = np.ones(3, np.float32)
    swapped = augment_stems(stems, mask, AugmentConfig(channel_swap_prob=1.0), rng)
    np.testing.assert_array_equal(swapped, stems[:, ::-1])
    np.testing.assert_array_equal(augment_stems(stems, mask, AugmentConfig(polarity_flip_prob=1.0), rng), -stems)
    gained = augment_stems(stems, mask, AugmentConfig(gain_db=(6.0, 6.0)), rng)
    np.testing.assert_allclose(gained, stems * 10 ** (6 / 20), rtol=1e-6)
    for seed in range(20):
        subset = augment_stems(stems, mask, AugmentConfig(subset_prob=1.0), np.random.default_rng(seed))
        active = [bool(np.any(s)) for s in subset]
        assert any(active)
        for s, keep in zip(range(3), active, strict=True):
            if keep:
                np.testing.assert_array_equal(subset[s], stems[s])
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(remix_prob=1.5)


def test_near_silent_segments_are_redrawn_and_retries_are_capped(tmp_path):
    sr = 8000
    quiet_start = tone(2.0, sr, 300)
    quiet_start[: int(1.4 * sr)] = 0.0
    write_track(tmp_path / "s" / "half", {"a": quiet_start}, sr, mixture=False)
    write_track(tmp_path / "s" / "silent", {"a": np.zeros((2 * sr, 1), np.float32)}, sr, mixture=False)
    index = build_index(tmp_path / "s", get_layout("stems", stems=("a",)))
    config = PipelineConfig(sample_rate=sr, segment_seconds=0.5, batch_size=1, max_silence_retries=5,
                            shard_index=0, shard_count=1)
    sampler = SegmentSampler(index.tracks, index.stems, config)
    half = next(t for t in index.tracks if t.track_id == "half")
    silent = next(t for t in index.tracks if t.track_id == "silent")
    results = [sampler(half, np.random.default_rng(s)) for s in range(10)]
    assert all(np.sqrt(np.mean(r["mixture"] ** 2)) > 1e-3 for r in results)
    assert any(r["silence_retries"] > 0 for r in results)
    assert sampler(silent, np.random.default_rng(0))["silence_retries"] == 5


def test_musdb_stem_mp4_through_stempeg(tmp_path):
    import shutil

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("MUSDB18 .stem.mp4 needs ffmpeg and ffprobe")
    stempeg = pytest.importorskip("stempeg")
    (tmp_path / "musdb" / "train").mkdir(parents=True)
    shutil.copy(stempeg.example_stem_path(), tmp_path / "musdb" / "train" / "Leaf - Summerghost.stem.mp4")
    index = build_index(tmp_path / "musdb", get_layout("musdb"))
    (track,) = index.tracks
    assert track.track_id == "train/Leaf - Summerghost" and track.split == "valid"
    assert track.channels == 2 and track.sample_rate == 44100 and 5 < track.seconds < 8
    assert {n: f.stream for n, f in track.stems.items()} == {"vocals": 4, "drums": 1, "bass": 2, "other": 3}
    full, _ = stempeg.read_stems(str(track.stems["vocals"].path), stem_id=4, dtype=np.float32)
    segment = read_segment(track.stems["vocals"].path, 1.0, 22050, 44100, channels=2, stream=4)
    expected = full[44100:66150].T
    assert np.corrcoef(segment.ravel(), expected.ravel())[0, 1] > 0.99
    config = PipelineConfig(sample_rate=22050, segment_seconds=1.0, batch_size=1, channels=2, split="valid",
                            shard_index=0, shard_count=1)
    batch = next(iter(training_dataset(index, config)))
    assert batch["targets"].shape == (1, 4, 2, 22050) and batch["mask"].tolist() == [[1, 1, 1, 1]]


def test_a_file_that_breaks_mid_run_is_reported_and_skipped(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    broken = next(t for t in index.tracks if t.track_id == "pop/song_a")
    (tmp_path / "jc" / "pop/song_a/soprano.wav").write_bytes(b"corrupted after indexing")
    sampler = SegmentSampler(index.split("train"), index.stems, jc_config())
    with pytest.warns(UserWarning, match="song_a/soprano.wav"):
        example = sampler(broken, np.random.default_rng(0))
    assert example["read_failures"] >= 1 and example["mask"].sum() > 0
    only_broken = SegmentSampler([broken], index.stems, jc_config(max_read_failures=2))
    with pytest.warns(UserWarning), pytest.raises(AudioError, match="3 unreadable draws"):
        only_broken(broken, np.random.default_rng(0))


def test_speed_augmentation_plays_every_stem_faster_or_slower_together(tmp_path):
    # One 3 s track whose two stems are sines of 400 and 600 Hz: at speed r both come out at r times their pitch.
    rate = 16000
    t = np.arange(3 * rate) / rate
    (tmp_path / "tones" / "song").mkdir(parents=True)
    for stem, freq in (("low", 400.0), ("high", 600.0)):
        sf.write(tmp_path / "tones" / "song" / f"{stem}.wav", 0.5 * np.sin(2 * np.pi * freq * t), rate)
    (tmp_path / "tones" / "test_list.txt").write_text("")
    index = build_index(tmp_path / "tones", get_layout("stems", stems=("low", "high")))

    def peaks(speed):
        config = PipelineConfig(sample_rate=rate, segment_seconds=0.5, batch_size=2, split="train",
                                augment=AugmentConfig(speed=speed), shard_index=0, shard_count=1)
        batch = next(iter(training_dataset(index, config)))
        assert batch["targets"].shape == (2, 2, 1, rate // 2)
        spectrum = np.abs(np.fft.rfft(batch["targets"][..., 0, :], axis=-1))
        return np.argmax(spectrum, axis=-1) * rate / (rate // 2)  # Hz, at 2 Hz resolution

    np.testing.assert_allclose(peaks((1.0, 1.0)), [[400, 600], [400, 600]], atol=2)
    np.testing.assert_allclose(peaks((1.5, 1.5)), [[600, 900], [600, 900]], atol=2)
    slow = peaks((0.8, 0.9))
    ratio = slow / np.array([400.0, 600.0])
    assert np.all((ratio > 0.8 - 0.01) & (ratio < 0.9 + 0.01))
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], atol=0.01)  # one speed per example, for every stem
    with pytest.raises(InputError, match="speed range"):
        AugmentConfig(speed=(1.2, 1.1))


def test_input_level_is_the_median_level_of_the_training_mixtures_it_draws(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella"))
    quiet_root = tmp_path / "quiet"
    for track in index.tracks:  # the same songs at half the amplitude (exact in float32)
        for stem, file in track.stems.items():
            audio, rate = sf.read(file.path, dtype="float32")
            (quiet_root / track.track_id).mkdir(parents=True, exist_ok=True)
            sf.write(quiet_root / track.track_id / f"{stem}.wav", audio * 0.5, rate, subtype="FLOAT")
    (quiet_root / "test_song_list_for_vocal_ensemble_separation.txt").write_text("song_c\n")
    quiet = build_index(quiet_root, get_layout("jacappella"))
    level = input_level(index, jc_config(), examples=16)
    draws = SegmentSampler(index.split("train"), index.stems, jc_config())
    rng = np.random.default_rng(0)
    stds = [np.std(draws(index.split("train")[rng.integers(3)], rng)["mixture"].mean(axis=0)) for _ in range(16)]
    assert level == pytest.approx(float(np.median(stds)), rel=1e-6)
    assert input_level(quiet, jc_config(), examples=16) == pytest.approx(level / 2, rel=1e-5)
    # Gain augmentation is part of the level a model sees: +6 dB on every stem instead of -6 dB is 12 dB louder.
    louder, softer = (input_level(index, jc_config(augment=AugmentConfig(gain_db=(g, g))), examples=16)
                      for g in (6.0, -6.0))
    assert louder == pytest.approx(softer * 10 ** (12 / 20), rel=1e-5)
    with pytest.raises(InputError, match="split 'nope'"):
        input_level(index, jc_config(split="nope"))
