"""Synthetic harmonic "voices": a quick, download-free mixture for sanity checks and the demo.

Each stem sings a random melody in its own register (bass at the bottom, soprano at the top):
harmonic partials with a 1/k roll-off, vibrato, and attack/release envelopes per note.
"""

import numpy as np

REGISTERS_HZ = ((98.0, 196.0), (147.0, 294.0), (220.0, 440.0), (294.0, 587.0), (330.0, 660.0))


def harmonic_voice(rng: np.random.Generator, low_hz: float, high_hz: float, num_samples: int,
                   sample_rate: int, notes: int = 4, partials: int = 8) -> np.ndarray:
    """One voice: `notes` notes of random pitch in [low_hz, high_hz], float32 (num_samples,)."""
    bounds = np.linspace(0, num_samples, notes + 1).astype(int)
    f0 = np.empty(num_samples)
    envelope = np.zeros(num_samples)
    fade = max(int(0.02 * sample_rate), 1)
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        f0[start:stop] = np.exp(rng.uniform(np.log(low_hz), np.log(high_hz)))
        length = stop - start
        ramp = np.minimum(np.arange(length), np.arange(length)[::-1]) / fade
        envelope[start:stop] = np.clip(ramp, 0.0, 1.0)
    t = np.arange(num_samples) / sample_rate
    f0 = f0 * (1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    nyquist = sample_rate / 2
    wave = sum(
        (np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k) * (k * f0 < nyquist)
        for k in range(1, partials + 1)
    )
    return (0.2 * envelope * wave).astype(np.float32)


def harmonic_stems(num_examples: int, num_stems: int, num_samples: int, sample_rate: int,
                   seed: int = 0) -> np.ndarray:
    """Targets of shape (num_examples, num_stems, 1, num_samples); sum over stems for the mixture."""
    if not 1 <= num_stems <= len(REGISTERS_HZ):
        raise ValueError(f"num_stems must be in 1..{len(REGISTERS_HZ)}, got {num_stems}")
    rng = np.random.default_rng(seed)
    out = np.empty((num_examples, num_stems, 1, num_samples), np.float32)
    for b in range(num_examples):
        for n in range(num_stems):
            out[b, n, 0] = harmonic_voice(rng, *REGISTERS_HZ[n], num_samples, sample_rate)
    return out
