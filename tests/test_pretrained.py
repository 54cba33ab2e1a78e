"""The models shipped inside the package: listed by `sepjax models`, used by name in `sepjax separate`."""

import json

import numpy as np
import pytest
import soundfile as sf

from sepjax.cli import main
from sepjax.inference.bundle import BundleError, load_bundle
from sepjax.inference.pretrained import PRETRAINED_DIR, resolve_bundle, shipped_bundles, shipped_summary


def test_the_chorale_model_ships_with_its_card_and_test_metrics():
    shipped = shipped_bundles()
    assert "chorales-satb" in shipped and shipped["chorales-satb"].parent == PRETRAINED_DIR
    path = shipped["chorales-satb"]
    bundle = load_bundle(path)
    assert bundle.stem_names == ("soprano", "alto", "tenor", "bass") and bundle.sample_rate == 8000
    assert sum(f.stat().st_size for f in path.iterdir()) < 20e6
    summary = shipped_summary(path)
    assert summary["split"] == "test" and set(summary["per_stem"]) == set(bundle.stem_names)
    card = (path / "MODEL_CARD.md").read_text()
    for stem, values in summary["per_stem"].items():  # the card's table is the shipped evaluation's
        assert f"| {stem} | {values['si_sdri']['mean']:+.2f} | {values['si_sdri']['median']:+.2f} |" in card


def test_sepjax_models_lists_the_shipped_models_with_their_metrics(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((PRETRAINED_DIR / "chorales-satb" / "summary.json").read_text())
    assert "chorales-satb: dual_path, 8000 Hz, stems soprano, alto, tenor, bass" in out
    assert f"soprano {summary['per_stem']['soprano']['si_sdri']['mean']:+.2f}" in out


def test_separate_takes_a_shipped_models_name(tmp_path, capsys):
    t = np.arange(16000 * 2) / 16000
    song = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 110 * t)
    sf.write(tmp_path / "song.wav", song.astype(np.float32), 16000)
    assert main(["separate", "chorales-satb", str(tmp_path / "song.wav"), "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out" / "song").iterdir())
    assert written == ["alto.wav", "bass.wav", "soprano.wav", "tenor.wav"]
    assert sf.info(tmp_path / "out" / "song" / "bass.wav").frames == len(song)  # back at the input's rate


def test_an_unknown_name_lists_the_shipped_models(tmp_path):
    with pytest.raises(BundleError, match=r"no-such-model: no such bundle folder.*shipped: .*chorales-satb"):
        resolve_bundle("no-such-model")
    assert resolve_bundle(tmp_path) == tmp_path  # an existing path is taken as it is


def held_out_improvement(renderer: str, input_levels) -> tuple:
    """The shipped model's SI-SDRi on the first 20 s of the first test chorale, rendered by `renderer` and read
    at 8 kHz as training reads it, once per input level (None: the bundle's own)."""
    from sepjax.audio import resample
    from sepjax.data.chorales import chorale_ids, render_chorale, split_of
    from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array
    from sepjax.metrics import si_sdr_improvement

    bundle = load_bundle(resolve_bundle("chorales-satb"))
    chorale = next(c for c in chorale_ids() if split_of(c) == "test")
    stems = resample(render_chorale(chorale, 16000, seed=0, renderer=renderer), 16000, 8000)[:, None, : 20 * 8000]
    mixture = stems.sum(axis=0)
    inference = InferenceConfig(chunk=int(bundle.chunk_seconds * 8000), overlap=0.5, batch_size=4)

    def improvement(input_std: float) -> np.ndarray:
        estimates = separate_array(BatchedModel(bundle.model, 4, input_std=input_std), mixture, inference)
        return np.asarray(si_sdr_improvement(estimates, stems, mixture))

    return bundle, [improvement(bundle.input_std if level is None else level) for level in input_levels]


def test_the_chorale_model_separates_a_held_out_chorale_at_the_level_it_trained_at():
    bundle, (at_level, at_unit) = held_out_improvement("numpy", [None, 1.0])
    assert 0.1 < bundle.input_std < 1.0  # the level its training mixtures had, recorded in the bundle
    assert at_level.min() > 4.5 and at_level.mean() > 8.0, dict(zip(bundle.stem_names, at_level, strict=True))
    # z-scored alone, the input is about 3.8 times louder than any mixture the model trained on
    assert at_level.mean() > at_unit.mean() + 1.0, (at_level, at_unit)


def test_the_chorale_model_holds_up_on_general_midi_choir_timbres():
    from sepjax.data.chorales import fluidsynth_available

    if not fluidsynth_available():
        pytest.skip("needs a fluidsynth binary and a General MIDI soundfont")
    bundle, (improvement,) = held_out_improvement("fluidsynth", [None])
    # The training set holds General MIDI renders of the train split; this chorale is held out.
    assert improvement.min() > 5.0 and improvement.mean() > 9.0, dict(
        zip(bundle.stem_names, improvement, strict=True))
