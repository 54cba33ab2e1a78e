"""Metrics against museval and NumPy/librosa references, plus the oracle ceiling."""

import jax.numpy as jnp
import librosa
import museval_reference
import numpy as np

from sepjax.metrics import (
    aggregate,
    bleedless_fullness,
    bss_sdr_v4,
    framewise_sdr,
    sdr,
    si_sdr,
    si_sdr_improvement,
    snr,
    stft_l1,
    track_metrics,
)


def signals(seed=0, sources=3, channels=2, length=8000 * 6 + 77, noise=0.3):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((sources, channels, length)).astype(np.float32)
    est = (ref + noise * rng.standard_normal(ref.shape)).astype(np.float32)
    return ref, est


def test_framewise_sdr_agrees_with_museval():
    ref, est = signals()
    ref[1, :, 8000:16000] = 0.0  # a silent reference frame
    est[2, :, 40000:48000] = 0.0  # a silent estimate frame
    expected = museval_reference.framewise_sdr(ref.transpose(0, 2, 1), est.transpose(0, 2, 1), 8000, 8000)
    ours = np.asarray(framewise_sdr(jnp.asarray(est), jnp.asarray(ref), 8000, 8000))
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    np.testing.assert_allclose(ours[~np.isnan(ours)], expected[~np.isnan(expected)], atol=1e-4)
    np.testing.assert_allclose(bss_sdr_v4(jnp.asarray(est), jnp.asarray(ref), 8000), np.nanmedian(expected, axis=1),
                               atol=1e-4)


def test_framewise_sdr_with_overlapping_frames_and_short_signals():
    ref, est = signals(seed=1, sources=2, channels=1, length=5000)
    for window, hop in ((2000, 1000), (8000, 8000)):  # 8000 > length: one frame of the whole signal
        expected = museval_reference.framewise_sdr(ref.transpose(0, 2, 1), est.transpose(0, 2, 1), window, hop)
        ours = np.asarray(framewise_sdr(jnp.asarray(est), jnp.asarray(ref), window, hop))
        np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_sdr_si_sdr_and_snr_match_numpy():
    ref, est = signals(seed=2, sources=2)
    r, e = ref.astype(np.float64), est.astype(np.float64)
    expected_sdr = 10 * np.log10((np.sum(r**2, axis=(1, 2)) + 1e-7) / (np.sum((r - e) ** 2, axis=(1, 2)) + 1e-7))
    np.testing.assert_allclose(sdr(jnp.asarray(est), jnp.asarray(ref)), expected_sdr, atol=1e-3)
    np.testing.assert_allclose(snr(jnp.asarray(est), jnp.asarray(ref)), expected_sdr, atol=1e-3)
    for i in range(2):
        fe, fr = e[i].ravel() - e[i].mean(), r[i].ravel() - r[i].mean()
        proj = (fe @ fr) / (fr @ fr) * fr
        expected = 10 * np.log10((proj @ proj) / ((fe - proj) @ (fe - proj)))
        np.testing.assert_allclose(si_sdr(jnp.asarray(est[i]), jnp.asarray(ref[i])), expected, atol=1e-3)


def test_si_sdr_improvement_is_zero_for_the_mixture_itself():
    ref, est = signals(seed=3, sources=2)
    mixture = ref.sum(axis=0)
    improvement = si_sdr_improvement(jnp.broadcast_to(jnp.asarray(mixture), ref.shape), jnp.asarray(ref),
                                     jnp.asarray(mixture))
    np.testing.assert_allclose(improvement, 0.0, atol=1e-4)
    assert bool(jnp.all(si_sdr_improvement(jnp.asarray(est), jnp.asarray(ref), jnp.asarray(mixture)) > 0))


def test_stft_l1_matches_librosa():
    ref, est = signals(seed=4, sources=1, channels=1, length=6000)
    expected = np.mean(np.abs(np.abs(librosa.stft(est[0, 0], n_fft=2048, hop_length=512, pad_mode="reflect"))
                              - np.abs(librosa.stft(ref[0, 0], n_fft=2048, hop_length=512, pad_mode="reflect"))))
    np.testing.assert_allclose(stft_l1(jnp.asarray(est[0]), jnp.asarray(ref[0])), expected, rtol=1e-4)


def numpy_bleed_full(ref, est, sr, n_fft=4096, hop=1024, n_mels=512):
    fb = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)

    def mel_db(x):
        mag = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="constant"))
        db = 20 * np.log10(np.maximum(fb @ mag, 1e-10))
        return np.maximum(db, db.max() - 80)

    diff = mel_db(est) - mel_db(ref)
    pos, neg = diff[diff > 0], diff[diff < 0]
    return 100 / ((pos.mean() if pos.size else 0) + 1), 100 / (-(neg.mean() if neg.size else 0) + 1)


def test_bleedless_and_fullness_match_the_msst_definition():
    rng = np.random.default_rng(5)
    sr = 16000
    t = np.arange(sr * 2) / sr
    ref = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).astype(np.float32) * 0.3
    est = (0.8 * ref + 0.02 * rng.standard_normal(ref.shape)).astype(np.float32)
    bleed, full = bleedless_fullness(jnp.asarray(est), jnp.asarray(ref), sr)
    expected = numpy_bleed_full(ref, est, sr)
    np.testing.assert_allclose([float(bleed), float(full)], expected, rtol=1e-3)


def test_oracle_estimates_score_the_ceiling():
    ref, _ = signals(seed=6, sources=2, length=16000)
    values = track_metrics(ref, ref, ref.sum(axis=0), 8000)
    assert np.all(values["sdr"] > 100) and np.all(np.isinf(values["bss_sdr_v4"]))
    assert np.all(values["si_sdr"] > 60) and np.all(values["snr"] > 60)
    np.testing.assert_allclose(values["stft_l1"], 0.0, atol=1e-5)
    np.testing.assert_allclose(values["bleedless"], 100.0)
    np.testing.assert_allclose(values["fullness"], 100.0)


def test_aggregate_means_and_medians_per_stem():
    rows = [{"track": f"t{i}", "stem": s, "sdr": v, "si_sdr": v + 1.0}
            for i, (s, v) in enumerate([("a", 1.0), ("a", 3.0), ("a", 8.0), ("b", float("nan")), ("b", 2.0)])]
    summary = aggregate(rows, metrics=("sdr", "si_sdr"))
    assert summary["a"]["sdr"] == {"mean": 4.0, "median": 3.0, "tracks": 3}
    assert summary["b"]["si_sdr"]["tracks"] == 1 and summary["b"]["si_sdr"]["mean"] == 3.0
