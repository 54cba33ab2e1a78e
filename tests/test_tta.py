"""Test-time augmentation and random shifts: exact on an identity model, no change on an equivariant one, a
real change (and the expected cost) on a model that is not, and bounded streaming."""

import numpy as np
import pytest

from sepjax.errors import InputError
from sepjax.inference.separate import InferenceConfig, normalize, separate_array, separate_stream
from sepjax.inference.tta import TTAModel, parse_tta


def identity(stems: int):
    return lambda chunks: np.repeat(chunks[:, None], stems, axis=1)


class Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, chunks):
        self.calls += 1
        return self.fn(chunks)


def equivariant(chunks):
    """Linear, channel-symmetric and position-independent per sample: commutes with polarity, swap and shifts."""
    mono = chunks.mean(axis=1, keepdims=True)
    return np.stack([0.5 * chunks + 0.25 * mono, -chunks], axis=1)


def not_equivariant(chunks):
    return np.stack([np.maximum(chunks, 0.0) * np.linspace(0.5, 1.5, chunks.shape[-1]), chunks[:, :1].repeat(2, 1)],
                    axis=1)


X = np.random.default_rng(0).standard_normal((2, 3001)).astype(np.float32)
CONFIG = InferenceConfig(chunk=128, overlap=0.5, batch_size=3)


def test_tta_on_an_identity_model_returns_the_input_exactly():
    chunks = np.random.default_rng(1).standard_normal((3, 2, 64)).astype(np.float32)
    out = TTAModel(identity(2), ("polarity", "swap"), 2, 2)(chunks)
    np.testing.assert_array_equal(out, identity(2)(chunks))
    np.testing.assert_allclose(separate_array(TTAModel(identity(2), ("polarity", "swap"), 2, 2), X, CONFIG),
                               np.broadcast_to(X, (2, *X.shape)), atol=1e-6)


def test_tta_changes_nothing_for_an_equivariant_model_and_costs_two_calls_per_transform():
    plain = separate_array(equivariant, X, CONFIG)
    counted = Counting(equivariant)
    np.testing.assert_allclose(separate_array(TTAModel(counted, ("polarity", "swap"), 2, 2), X, CONFIG), plain,
                               atol=1e-6)
    chunks = -(-(X.shape[-1] + 64) // 64)  # chunk − hop of left padding, whole hops
    assert counted.calls == 4 * -(-chunks // CONFIG.batch_size)
    averaged = separate_array(TTAModel(not_equivariant, ("polarity",), 2, 2), X, CONFIG)
    assert not np.allclose(averaged, separate_array(not_equivariant, X, CONFIG), atol=1e-3)


def test_tta_names_bad_transforms_and_needs_stereo_to_swap():
    assert parse_tta("polarity, swap,polarity") == ("polarity", "swap") and parse_tta(None) == ()
    with pytest.raises(InputError, match="unknown transform.*flip"):
        parse_tta("polarity,flip")
    with pytest.raises(InputError, match="swap needs a stereo model; this one has 1 input"):
        TTAModel(identity(2), ("swap",), 1, 1)


def test_shifts_on_an_identity_model_return_the_input():
    config = InferenceConfig(chunk=128, overlap=0.5, batch_size=3, shifts=3)
    offsets = config.shift_offsets()
    assert len(offsets) == 3 and len(set(offsets)) > 1 and all(0 <= o < 64 for o in offsets)
    assert config.shift_offsets() == offsets  # seeded
    np.testing.assert_allclose(separate_array(identity(2), X, config), np.broadcast_to(X, (2, *X.shape)), atol=1e-5)


def test_shifts_change_nothing_for_an_equivariant_model_but_average_one_that_is_not():
    shifted = InferenceConfig(chunk=128, overlap=0.5, batch_size=3, shifts=4)
    np.testing.assert_allclose(separate_array(equivariant, X, shifted), separate_array(equivariant, X, CONFIG),
                               atol=1e-5)
    one = separate_array(not_equivariant, X, CONFIG)
    averaged = separate_array(not_equivariant, X, shifted)
    assert averaged.shape == one.shape and not np.allclose(averaged, one, atol=1e-3)
    # By hand: each run delayed by its offset of silence and advanced back, then the mean.
    _, stats = normalize(X)
    runs = []
    for o in shifted.shift_offsets():
        delayed = np.concatenate([np.full((2, o), stats.mean, np.float32), X], axis=-1)
        pieces = separate_stream(not_equivariant, [delayed], X.shape[-1] + o, 2, CONFIG, stats)
        runs.append(np.concatenate(list(pieces), axis=-1)[..., o:])
    np.testing.assert_allclose(averaged, np.mean(runs, axis=0), atol=1e-5)


def test_shifted_streams_emit_as_they_go():
    config = InferenceConfig(chunk=128, overlap=0.5, batch_size=2, shifts=2)
    _, stats = normalize(X)
    blocks = (X[:, i : i + 300] for i in range(0, X.shape[-1], 300))  # a generator, read once
    pieces = list(separate_stream(equivariant, blocks, X.shape[-1], 2, config, stats))
    assert len(pieces) > 5
    np.testing.assert_allclose(np.concatenate(pieces, axis=-1), separate_array(equivariant, X, CONFIG), atol=1e-5)
    with pytest.raises(InputError, match="shifts=-1"):
        InferenceConfig(chunk=128, shifts=-1)


def test_separate_cli_takes_tta_and_shifts(tmp_path, capsys):
    import jax
    import soundfile as sf

    from sepjax.cli import main
    from sepjax.inference.bundle import save_bundle
    from sepjax.models import build_model, get_config

    model = build_model(get_config("dual-path-sepreformer-tiny", num_stems=2), key=jax.random.PRNGKey(0))
    save_bundle(tmp_path / "bundle", model, ["a", "b"], 8000)
    sf.write(tmp_path / "song.wav", 0.3 * np.sin(np.arange(6000) / 5.0), 8000)
    base = ["separate", str(tmp_path / "bundle"), str(tmp_path / "song.wav"), "--chunk-seconds", "0.25"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "tta"), "--tta", "polarity", "--shifts", "2"]) == 0
    plain, _ = sf.read(tmp_path / "plain" / "song" / "a.wav")
    augmented, _ = sf.read(tmp_path / "tta" / "song" / "a.wav")
    assert plain.shape == augmented.shape and not np.allclose(plain, augmented)
    assert main([*base, "--out", str(tmp_path / "bad"), "--tta", "swap"]) == 2
    assert "swap needs a stereo model" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
