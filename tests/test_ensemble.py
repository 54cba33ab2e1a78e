"""Ensembles: weighted means and medians of chunk functions, and `sepjax separate B1 B2 … --ensemble`."""

import jax
import numpy as np
import pytest
import soundfile as sf

from sepjax.cli import main
from sepjax.errors import InputError
from sepjax.inference.bundle import save_bundle
from sepjax.inference.ensemble import EnsembleModel
from sepjax.models import build_model, get_config


def scaled(factor):
    return lambda chunks: np.repeat(chunks[:, None], 2, axis=1) * factor


def test_mean_weighted_mean_and_median_of_the_models():
    chunks = np.random.default_rng(0).standard_normal((3, 1, 40)).astype(np.float32)
    base = scaled(1.0)(chunks)
    np.testing.assert_allclose(EnsembleModel([scaled(1.0), scaled(3.0)])(chunks), 2.0 * base, rtol=1e-6)
    np.testing.assert_allclose(EnsembleModel([scaled(1.0), scaled(3.0)], weights=[3.0, 1.0])(chunks), 1.5 * base,
                               rtol=1e-6)
    np.testing.assert_allclose(EnsembleModel([scaled(1.0), scaled(10.0), scaled(2.0)], "median")(chunks), 2.0 * base,
                               rtol=1e-6)
    with pytest.raises(InputError, match="at least two models"):
        EnsembleModel([scaled(1.0)])
    with pytest.raises(InputError, match="--weights apply to --ensemble mean"):
        EnsembleModel([scaled(1.0), scaled(2.0)], "median", weights=[1.0, 1.0])
    with pytest.raises(InputError, match="need 2 non-negative weights"):
        EnsembleModel([scaled(1.0), scaled(2.0)], weights=[1.0, -1.0])


def test_separate_cli_ensembles_bundles_and_refuses_mismatched_ones(tmp_path, capsys):
    config = get_config("dual-path-sepreformer-tiny", num_stems=2)
    for i in range(2):
        save_bundle(tmp_path / f"b{i}", build_model(config, key=jax.random.PRNGKey(i)), ["a", "b"], 8000)
    save_bundle(tmp_path / "other", build_model(config, key=jax.random.PRNGKey(2)), ["x", "y"], 8000)
    sf.write(tmp_path / "song.wav", 0.3 * np.sin(np.arange(6000) / 5.0), 8000)
    song, flags = str(tmp_path / "song.wav"), ["--chunk-seconds", "0.25"]
    for i in range(2):
        assert main(["separate", str(tmp_path / f"b{i}"), song, "--out", str(tmp_path / f"out{i}"), *flags]) == 0
    assert main(["separate", str(tmp_path / "b0"), str(tmp_path / "b1"), song, "--ensemble", "mean",
                 "--out", str(tmp_path / "mean"), *flags]) == 0
    one, two, mean = (sf.read(tmp_path / d / "song" / "a.wav")[0] for d in ("out0", "out1", "mean"))
    np.testing.assert_allclose(mean, (one + two) / 2, atol=1e-5)
    assert main(["separate", str(tmp_path / "b0"), str(tmp_path / "other"), song, "--ensemble", "mean",
                 "--out", str(tmp_path / "bad"), *flags]) == 2
    assert "cannot ensemble" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["separate", str(tmp_path / "b0"), song, "--ensemble", "median", "--out", str(tmp_path / "x")]) == 2
    assert "--ensemble needs at least two bundles" in capsys.readouterr().err
    assert main(["separate", str(tmp_path / "b0"), song, "--weights", "1", "--out", str(tmp_path / "y")]) == 2
    assert "--weights need --ensemble mean" in capsys.readouterr().err
