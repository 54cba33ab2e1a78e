"""STFT and inverse STFT in JAX with `torch.stft` semantics, plus a mel filterbank.

Conventions (as torch.stft / librosa.stft): a periodic window of `win_length` zero-padded to
`n_fft` at the centre; `center=True` pads n_fft//2 on both sides with `pad_mode`; frame t is
centred at t·hop; one-sided output of shape (..., n_fft//2 + 1, frames); `normalized=True`
multiplies by n_fft^(−1/2). Framing is `sepjax.framing.frame` (reshape, never gather).
"""

from functools import cache

import jax.numpy as jnp
import librosa
import numpy as np
from jaxtyping import Array, Complex, Float

from sepjax.framing import frame, overlap_add

WINDOWS = ("hann", "hamming", "blackman", "rectangular")


@cache
def window_array(name: str, win_length: int, n_fft: int) -> np.ndarray:
    """Periodic window of `win_length`, centred inside `n_fft` zeros (float32 NumPy)."""
    if name not in WINDOWS:
        raise ValueError(f"unknown window {name!r}; choose from {WINDOWS}")
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length={win_length} must be in (0, n_fft={n_fft}]")
    n = np.arange(win_length)
    if name == "rectangular":
        w = np.ones(win_length)
    else:
        a = {"hann": (0.5, 0.5, 0.0), "hamming": (0.54, 0.46, 0.0), "blackman": (0.42, 0.5, 0.08)}[name]
        phase = 2 * np.pi * n / win_length
        w = a[0] - a[1] * np.cos(phase) + a[2] * np.cos(2 * phase)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def _pad_center(x: Float[Array, "*lead time"], pad: int, mode: str) -> Float[Array, "*lead padded"]:
    if mode == "reflect" and x.shape[-1] <= pad:
        raise ValueError(f"reflect padding of {pad} needs more than {pad} samples, got {x.shape[-1]}")
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode=mode)


def stft(
    x: Float[Array, "*lead time"], n_fft: int, hop_length: int | None = None,
    win_length: int | None = None, window: str = "hann", center: bool = True,
    pad_mode: str = "reflect", normalized: bool = False,
) -> Complex[Array, "*lead freqs frames"]:
    """Complex one-sided STFT, like `torch.stft(..., return_complex=True)`."""
    hop = hop_length or n_fft // 4
    win = window_array(window, win_length or n_fft, n_fft)
    if center:
        x = _pad_center(x, n_fft // 2, pad_mode)
    frames = frame(x, n_fft, hop) * jnp.asarray(win, dtype=x.dtype)
    spec = jnp.fft.rfft(frames, n=n_fft, axis=-1)
    if normalized:
        spec = spec * (n_fft ** -0.5)
    return jnp.swapaxes(spec, -1, -2)


def istft(
    spec: Complex[Array, "*lead freqs frames"], n_fft: int, hop_length: int | None = None,
    win_length: int | None = None, window: str = "hann", center: bool = True,
    normalized: bool = False, length: int | None = None,
) -> Float[Array, "*lead time"]:
    """Least-squares inverse (window-square normalised overlap-add), like `torch.istft`."""
    hop = hop_length or n_fft // 4
    win = window_array(window, win_length or n_fft, n_fft)
    if normalized:
        spec = spec * (n_fft ** 0.5)
    frames = jnp.fft.irfft(jnp.swapaxes(spec, -1, -2), n=n_fft, axis=-1)
    count = frames.shape[-2]
    signal = overlap_add(frames * win, hop)
    envelope = np.asarray(overlap_add(jnp.broadcast_to(jnp.asarray(win**2), (count, n_fft)), hop))
    start = n_fft // 2 if center else 0
    stop = signal.shape[-1] - start if length is None else start + length
    signal, envelope = signal[..., start:stop], envelope[start:stop]
    if length is not None and signal.shape[-1] < length:
        pad = length - signal.shape[-1]
        signal = jnp.pad(signal, [(0, 0)] * (signal.ndim - 1) + [(0, pad)])
        envelope = np.pad(envelope, (0, pad))
    safe = np.where(envelope > 1e-11, envelope, 1.0).astype(np.float32)
    return signal / jnp.asarray(safe, dtype=signal.dtype)


def magnitude(spec: Complex[Array, "..."], floor: float = 1e-7) -> Float[Array, "..."]:
    """|spec| clamped below at `floor`, so its gradient stays finite at zero."""
    power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
    return jnp.sqrt(jnp.maximum(power, floor**2))


@cache
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) Slaney mel filters from librosa."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                               fmax=fmax).astype(np.float32)
