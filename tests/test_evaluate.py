"""Dataset evaluation: the oracle ceiling, the written reports, the CLI, bad input."""

import csv
import io
import json

import jax
import matplotlib.image
import numpy as np
import pytest
from fixtures import make_2mix, make_jacappella
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sepjax.cli import main
from sepjax.data.index import build_index, load_track
from sepjax.data.layouts import get_layout
from sepjax.errors import InputError
from sepjax.inference.bundle import save_bundle
from sepjax.inference.evaluate import evaluate
from sepjax.models import build_model, get_config

STEMS = ("soprano", "alto", "tenor", "bass")


def test_oracle_model_scores_the_metric_ceiling(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella", stems=STEMS))

    def oracle(mixture, track):
        return load_track(track, STEMS, 16000, 1)[0]

    result = evaluate(oracle, index, "train", STEMS, 16000, 1, tmp_path / "out", tensorboard_tracks=1, progress=False)
    summary = result["per_stem"]
    assert set(summary) == set(STEMS)
    assert summary["alto"]["sdr"]["tracks"] == 2  # song_b has no alto: not scored
    for stem in STEMS:
        assert summary[stem]["si_sdr"]["mean"] > 60
        assert summary[stem]["bleedless"]["mean"] == 100 and summary[stem]["fullness"]["mean"] == 100
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "metrics.csv").read_text())))
    tracks = {t.track_id: t for t in index.tracks}
    for row in rows:  # MDX SDR's ceiling for a perfect estimate: 10·log10(1 + Σs²/δ)
        targets, _ = load_track(tracks[row["track"]], STEMS, 16000, 1)
        energy = float(np.sum(targets[STEMS.index(row["stem"])].astype(np.float64) ** 2))
        np.testing.assert_allclose(float(row["sdr"]), 10 * np.log10(1 + energy / 1e-7), atol=0.01)
    assert len(rows) == 3 * 4 - 1 and {r["track"] for r in rows} == {"pop/song_a", "pop/song_b", "jazz/song_d"}
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["tracks"] == 3
    assert "| soprano | 3 |" in (tmp_path / "out" / "summary.md").read_text()
    events = EventAccumulator(str(tmp_path / "out" / "tensorboard"), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert any(t.endswith("estimate/soprano") for t in events.Tags()["audio"])
    assert any("spectrogram/bass" in t for t in events.Tags()["images"])
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())  # the first track's, as PNGs
    first = index.split("train")[0].track_id.replace("/", "_")
    assert figures == sorted(f"track_{first}_{s}.png" for s in STEMS if s in index.split("train")[0].stems)
    assert matplotlib.image.imread(tmp_path / "out" / "figures" / figures[0]).shape[:2] == (340, 1000)


def test_mixture_as_estimate_scores_zero_improvement(tmp_path):
    index = build_index(make_jacappella(tmp_path / "jc"), get_layout("jacappella", stems=STEMS))

    def mixture_copy(mixture, track):
        return np.repeat(mixture[None], len(STEMS), axis=0)

    summary = evaluate(mixture_copy, index, "test", STEMS, 16000, 1, tmp_path / "out", progress=False)["per_stem"]
    for stem in STEMS:
        assert abs(summary[stem]["si_sdri"]["mean"]) < 1e-3


def test_evaluate_cli_with_a_bundle_and_its_errors(tmp_path, capsys):
    make_jacappella(tmp_path / "jc")
    model = build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))
    save_bundle(tmp_path / "bundle", model, list(STEMS), 8000)
    args = ["evaluate", str(tmp_path / "bundle"), str(tmp_path / "jc"), "--layout", "jacappella", "--split", "test",
            "--out", str(tmp_path / "eval"), "--chunk-seconds", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| stem | tracks |" in out and "| bass | 1 |" in out
    assert main(args) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    save_bundle(tmp_path / "bundle2", model, ["vocals", "drums", "bass", "other"], 8000)
    assert main(["evaluate", str(tmp_path / "bundle2"), *args[2:-4], "--out", str(tmp_path / "e2")]) == 2
    assert "model stems ['vocals', 'drums', 'other'] are not stems" in capsys.readouterr().err


def test_speakers_are_scored_in_the_best_order_whatever_the_model_calls_them(tmp_path):
    index = build_index(make_2mix(tmp_path / "2mix"), get_layout("2mix"))

    def swapped_oracle(mixture, track):  # the right speakers in the wrong order
        return load_track(track, ("s1", "s2"), 8000, 1)[0][::-1]

    result = evaluate(swapped_oracle, index, "test", ("spk1", "spk2"), 8000, 1, tmp_path / "out", progress=False)
    assert set(result["per_stem"]) == {"s1", "s2"}
    assert all(v["si_sdr"]["mean"] > 60 for v in result["per_stem"].values())
    with pytest.raises(InputError, match="a model with 3 outputs cannot separate the 2 speakers"):
        evaluate(swapped_oracle, index, "test", ("a", "b", "c"), 8000, 1, tmp_path / "three", progress=False)
