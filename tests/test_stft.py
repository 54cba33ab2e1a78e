"""STFT/iSTFT against librosa (same conventions as torch.stft)."""

import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from sepjax.stft import istft, mel_filterbank, stft, window_array

CASES = [(16000, 512, 128, None), (5001, 1024, 256, None), (4000, 400, 160, 300), (3000, 512, 100, None),
         (2048, 2048, 512, None)]


@pytest.mark.parametrize("length,n_fft,hop,win", CASES)
def test_stft_matches_librosa(length, n_fft, hop, win):
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    expected = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                            center=True, pad_mode="reflect")
    ours = np.asarray(stft(jnp.asarray(x), n_fft, hop, win))
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("length,n_fft,hop,win", CASES)
def test_istft_matches_librosa_and_inverts(length, n_fft, hop, win):
    x = np.random.default_rng(length + 1).standard_normal(length).astype(np.float32)
    spec = librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win, pad_mode="reflect")
    expected = librosa.istft(spec, hop_length=hop, win_length=win, n_fft=n_fft, length=length)
    ours = np.asarray(istft(jnp.asarray(spec), n_fft, hop, win, length=length))
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(ours, x, atol=1e-5)


def test_center_false_and_batched_leading_axes():
    x = np.random.default_rng(0).standard_normal((2, 3, 1000)).astype(np.float32)
    ours = np.asarray(stft(jnp.asarray(x), 256, 64, center=False))
    expected = librosa.stft(x, n_fft=256, hop_length=64, center=False)
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_normalized_scales_by_inverse_sqrt_nfft_and_round_trips():
    x = np.random.default_rng(1).standard_normal(2000).astype(np.float32)
    plain = np.asarray(stft(jnp.asarray(x), 512, 128))
    normed = stft(jnp.asarray(x), 512, 128, normalized=True)
    np.testing.assert_allclose(np.asarray(normed), plain / np.sqrt(512), rtol=1e-5, atol=1e-6)
    back = istft(normed, 512, 128, normalized=True, length=2000)
    np.testing.assert_allclose(back, x, atol=1e-5)


def test_window_is_periodic_hann_like_torch():
    w = window_array("hann", 8, 8)
    np.testing.assert_allclose(w, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(8) / 8), atol=1e-7)
    with pytest.raises(ValueError, match="unknown window"):
        window_array("kaiser", 8, 8)


def test_reflect_padding_on_too_short_input_is_a_clear_error():
    with pytest.raises(ValueError, match="reflect padding of 256"):
        stft(jnp.zeros(100), 512, 128)


def test_mel_filterbank_is_librosas():
    expected = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40)
    np.testing.assert_allclose(mel_filterbank(16000, 512, 40), expected, rtol=1e-6)
