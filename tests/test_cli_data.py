"""`sepjax data …` end to end on small fixtures."""

import re

import numpy as np
import pytest
from fixtures import make_jacappella, make_musdb

from sepjax.audio import read
from sepjax.cli import main
from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.data.pipeline import PipelineConfig, input_level


def test_data_index_prints_a_summary(tmp_path, capsys):
    make_jacappella(tmp_path / "jc")
    assert main(["data", "index", str(tmp_path / "jc"), "--layout", "jacappella"]) == 0
    out = capsys.readouterr().out
    assert "4 tracks" in out and "test" in out and "48000 Hz" in out
    assert "alto" in out and "finger_snap" in out  # extra stem reported
    assert "median standard deviation" not in out
    assert main(["data", "index", str(tmp_path / "jc"), "--layout", "jacappella", "--level"]) == 0
    level = float(re.search(r"median standard deviation ([0-9.e-]+) ", capsys.readouterr().out).group(1))
    index = build_index(tmp_path / "jc", get_layout("jacappella"))
    expected = input_level(index, PipelineConfig(sample_rate=48000, segment_seconds=4.0, batch_size=1))
    assert level == pytest.approx(expected, rel=1e-3) and 0.01 < level < 10


def test_data_index_errors_name_the_problem(tmp_path, capsys):
    assert main(["data", "index", str(tmp_path / "missing"), "--layout", "musdb"]) == 2
    assert "missing: dataset root is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "index", str(tmp_path / "empty"), "--layout", "musdb"]) == 2
    assert "no tracks found" in capsys.readouterr().err
    assert main(["data", "index", str(tmp_path), "--layout", "nope"]) == 2
    assert "unknown layout 'nope'" in capsys.readouterr().err


def test_data_chorales_refuses_bad_programs_before_writing(tmp_path, capsys):
    out = tmp_path / "corpus"
    with pytest.raises(SystemExit) as exit_:
        main(["data", "chorales", str(out), "--renderer", "fluidsynth", "--programs", "choir,53,52,53"])
    assert exit_.value.code == 2
    assert "'choir,53,52,53': expected comma-separated General MIDI" in capsys.readouterr().err
    assert main(["data", "chorales", str(out), "--programs", "54,54,54,54"]) == 2
    assert "need --renderer fluidsynth" in capsys.readouterr().err
    assert not out.exists()


def test_data_preview_writes_segments_and_tensorboard_and_refuses_overwrite(tmp_path, capsys):
    make_musdb(tmp_path / "musdb")
    out = tmp_path / "preview"
    args = ["data", "preview", str(tmp_path / "musdb"), "--layout", "musdb", "--out", str(out), "--count", "2",
            "--seconds", "0.5", "--sample-rate", "22050", "--channels", "2", "--swap", "0.5", "--flip", "0.5"]
    assert main(args) == 0
    segment = out / "segment_00"
    mixture, sr = read(segment / "mixture.wav")
    present = [segment / f"{n}.wav" for n in ("vocals", "drums", "bass", "other")]
    stems = sum(read(p)[0] for p in present if p.exists())
    assert sr == 22050 and mixture.shape == (2, 11025)
    np.testing.assert_allclose(mixture, stems, atol=1e-5)
    assert any((out / "tensorboard").iterdir())
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err


def test_only_sepjax_user_errors_become_one_line_messages(tmp_path, monkeypatch, capsys):
    import pytest

    from sepjax.errors import InputError

    def bug(args):
        raise ValueError("a shape bug deep inside the code")

    def bad_value(args):
        raise InputError(f"{args.root}: a value the user can fix")

    monkeypatch.setattr("sepjax.cli.cmd_data_index", bug)
    with pytest.raises(ValueError, match="a shape bug"):  # the traceback reaches the user
        main(["data", "index", str(tmp_path), "--layout", "musdb"])
    monkeypatch.setattr("sepjax.cli.cmd_data_index", bad_value)
    assert main(["data", "index", str(tmp_path), "--layout", "musdb"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: a value the user can fix\n"
