"""The embedded chorale corpus: rendering, pitch faithfulness, layout, split stability."""

from collections import Counter

import librosa
import numpy as np
import pytest

from sepjax.data.chorales import (
    PARTS,
    SkipChorale,
    build_chorales,
    chorale_ids,
    chorale_tempo,
    render_chorale,
    score_notes,
    split_of,
)
from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.data.voice_synth import Timbre, harmonic_amplitudes
from sepjax.errors import InputError

CHORALE = "bwv269"


def test_corpus_ships_hundreds_of_chorales_and_the_split_is_stable():
    ids = chorale_ids()
    assert len(ids) > 300 and CHORALE in ids
    assert [split_of(c) for c in ids] == [split_of(c) for c in sorted(ids, reverse=True)][::-1]
    counts = Counter(split_of(c) for c in ids)
    assert 0.7 < counts["train"] / len(ids) < 0.9 and counts["test"] > 20 and counts["valid"] > 20


@pytest.fixture(scope="module")
def rendered():
    return render_chorale(CHORALE, 8000, seed=0)


def test_render_gives_four_equal_length_non_silent_stems(rendered):
    assert rendered.shape[0] == 4 and rendered.dtype == np.float32
    for stem in rendered:
        assert np.sqrt(np.mean(stem**2)) > 1e-3
    assert np.all(np.isfinite(rendered))
    again = render_chorale(CHORALE, 8000, seed=0)
    np.testing.assert_array_equal(rendered, again)
    assert not np.array_equal(rendered, render_chorale(CHORALE, 8000, seed=1)[:, : rendered.shape[1]])


def test_each_part_sings_within_a_semitone_of_the_score(rendered):
    sr, hop = 8000, 256
    notes = score_notes(CHORALE, chorale_tempo(CHORALE, 0))
    end = max(o + d for evs in notes.values() for o, d, _ in evs)
    assert abs(int((end + 0.5) * sr) - rendered.shape[1]) <= 1
    bounds = {"soprano": (200, 1000), "alto": (150, 800), "tenor": (90, 500), "bass": (55, 350)}
    for part, stem in zip(PARTS, rendered, strict=True):
        f0 = librosa.yin(stem, fmin=bounds[part][0], fmax=bounds[part][1], sr=sr, frame_length=1024, hop_length=hop)
        rms = librosa.feature.rms(y=stem, frame_length=1024, hop_length=hop)[0][: f0.size]
        voiced = rms > 0.3 * np.median(rms[rms > 0])
        sung = np.median(librosa.hz_to_midi(f0[voiced]))
        durations = np.array([d for _, d, _ in notes[part]])
        pitches = np.array([p for _, _, p in notes[part]])
        order = np.argsort(pitches)
        cumulative = np.cumsum(durations[order])
        score_median = pitches[order][np.searchsorted(cumulative, cumulative[-1] / 2)]
        assert abs(sung - score_median) <= 1.0, (part, sung, score_median)


def test_parts_have_distinct_formant_shaped_spectra():
    low = harmonic_amplitudes(110.0, 16000, Timbre(vowel="a"))
    high = harmonic_amplitudes(110.0, 16000, Timbre(vowel="i"))
    assert low.shape == high.shape and not np.allclose(low, high)
    assert np.sum(low**2) / 2 == pytest.approx(1.0, rel=1e-6)


def test_build_writes_jacappella_layout_keeps_existing_songs_and_indexes(tmp_path):
    report = build_chorales(tmp_path / "corpus", sample_rate=8000, limit=2, workers=1)
    assert len(report.written) == 2 and not report.skipped and report.realtime_factor > 1
    song = tmp_path / "corpus" / "bach" / report.written[0]
    assert sorted(p.name for p in song.iterdir()) == sorted(f"{n}.wav" for n in (*PARTS, "mixture"))
    mtime = (song / "mixture.wav").stat().st_mtime_ns
    again = build_chorales(tmp_path / "corpus", sample_rate=8000, limit=2, workers=1)
    assert again.written == [] and sorted(again.present) == sorted(report.written)
    assert (song / "mixture.wav").stat().st_mtime_ns == mtime
    index = build_index(tmp_path / "corpus", get_layout("chorales"))
    assert index.stems == PARTS and len(index.tracks) == 2
    assert all(t.split == split_of(t.track_id.split("/")[1]) for t in index.tracks)
    assert all(set(t.stems) == set(PARTS) for t in index.tracks)


def test_one_split_alone_renders_only_its_chorales(tmp_path):
    report = build_chorales(tmp_path / "tests", sample_rate=8000, limit=2, workers=1, split="test")
    first_tests = [c for c in chorale_ids() if split_of(c) == "test"][:2]
    assert sorted(report.written) == sorted(first_tests)
    index = build_index(tmp_path / "tests", get_layout("chorales"))
    assert [t.split for t in index.tracks] == ["test", "test"]
    with pytest.raises(InputError, match="unknown split 'tset'"):
        build_chorales(tmp_path / "x", split="tset")


def test_unknown_renderer_and_missing_fluidsynth_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown renderer"):
        build_chorales(tmp_path, renderer="midi")
    monkeypatch.setattr("sepjax.data.chorales.shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs a `fluidsynth` binary"):
        build_chorales(tmp_path, renderer="fluidsynth")
    with pytest.raises(InputError, match=r"programs \[54, 54, 54, 54\] .* need --renderer fluidsynth"):
        build_chorales(tmp_path, programs=(54, 54, 54, 54))
    for bad in [(52, 53, 52), (52, 53, 52, 128), (-1, 53, 52, 53)]:
        with pytest.raises(InputError, match="need 4 General MIDI programs .0-127., one each for soprano"):
            build_chorales(tmp_path, renderer="fluidsynth", programs=bad)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_malformed_repeats_are_skipped_with_the_reason():
    # bwv277 is the one chorale of music21's 350 whose repeats music21 cannot expand.
    with pytest.raises(SkipChorale, match="malformed repeats"):
        score_notes("bwv277", 80.0)


def test_scores_own_tempo_marks_are_ignored():
    slow, fast = score_notes(CHORALE, 60.0), score_notes(CHORALE, 120.0)
    assert slow["bass"][-1][0] == pytest.approx(2 * fast["bass"][-1][0])


def test_not_four_parts_is_a_skip_with_a_reason():
    from music21 import stream

    from sepjax.data.chorales import _satb_parts

    score = stream.Score([stream.Part(id="Soprano"), stream.Part(id="Alto")])
    with pytest.raises(SkipChorale, match="not four SATB parts"):
        _satb_parts(score)


def test_fluidsynth_renderer_when_installed(tmp_path):
    from sepjax.data.chorales import fluidsynth_available

    if not fluidsynth_available():
        pytest.skip("needs a fluidsynth binary and a General MIDI soundfont")
    stems = render_chorale(CHORALE, 16000, seed=0, renderer="fluidsynth")
    reference = render_chorale(CHORALE, 16000, seed=0)
    assert stems.shape == reference.shape
    assert all(np.sqrt(np.mean(s**2)) > 1e-4 for s in stems)
    # Other General MIDI patches sing the same notes with another timbre.
    synth_voice = render_chorale(CHORALE, 16000, seed=0, renderer="fluidsynth", programs=(54, 54, 54, 54))
    assert synth_voice.shape == stems.shape
    assert all(np.sqrt(np.mean(s**2)) > 1e-4 for s in synth_voice)
    assert np.abs(synth_voice - stems).max() > 0.1 * np.abs(stems).max()
