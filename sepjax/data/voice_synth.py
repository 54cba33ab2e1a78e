"""A small NumPy singing synthesiser: harmonic source, vowel formants, vibrato, envelopes, breath.

Each note is additive synthesis of the harmonics of f0 below Nyquist. Harmonic k gets the
glottal roll-off (`tilt_db_per_octave`) times the vowel's formant envelope at k·f0, so the
spectrum changes with pitch the way a sung vowel does. Vibrato fades in after the attack;
attacks and releases are raised-cosine ramps; breath noise is high-passed noise that follows
the note envelope.
"""

from dataclasses import dataclass, replace

import numpy as np

# Vowel formants (Hz, bandwidth Hz, gain dB), roughly Peterson & Barney / singing-voice tables.
VOWELS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "a": ((800, 80, 0), (1150, 90, -6), (2900, 120, -32), (3900, 130, -20)),
    "e": ((400, 60, 0), (1600, 80, -24), (2700, 120, -30), (3300, 150, -35)),
    "i": ((270, 60, 0), (2140, 90, -20), (2950, 100, -30), (3900, 120, -36)),
    "o": ((450, 70, 0), (800, 80, -11), (2830, 100, -22), (3800, 130, -22)),
    "u": ((325, 50, 0), (700, 60, -16), (2530, 170, -35), (3500, 180, -40)),
}
# Per part: formant scale (smaller vocal tract for higher voices), spectral tilt, vibrato rate, breath.
PART_TIMBRES = {
    "soprano": (1.12, -9.0, 5.8, 0.012),
    "alto": (1.05, -10.0, 5.4, 0.014),
    "tenor": (0.92, -11.0, 5.2, 0.010),
    "bass": (0.85, -12.0, 4.8, 0.008),
}


@dataclass(frozen=True)
class Timbre:
    vowel: str = "a"
    formant_scale: float = 1.0
    tilt_db_per_octave: float = -10.0
    vibrato_hz: float = 5.5
    vibrato_depth: float = 0.012
    vibrato_delay: float = 0.15
    breath: float = 0.01
    attack: float = 0.04
    release: float = 0.06


def part_timbre(part: str, rng: np.random.Generator) -> Timbre:
    """A voice for `part` with a random vowel and small random variations (one per part per chorale)."""
    scale, tilt, vib, breath = PART_TIMBRES[part]
    return Timbre(
        vowel=str(rng.choice(sorted(VOWELS))), formant_scale=scale * rng.uniform(0.96, 1.04),
        tilt_db_per_octave=tilt + rng.uniform(-1.5, 1.5), vibrato_hz=vib * rng.uniform(0.9, 1.1),
        vibrato_depth=rng.uniform(0.008, 0.018), breath=breath * rng.uniform(0.7, 1.3),
        attack=rng.uniform(0.03, 0.06), release=rng.uniform(0.05, 0.09),
    )


def harmonic_amplitudes(f0: float, sample_rate: int, timbre: Timbre) -> np.ndarray:
    """Amplitudes of harmonics 1..K of f0 (K = those below 0.45·sample_rate), unit RMS."""
    count = max(int(0.45 * sample_rate // f0), 1)
    freqs = f0 * np.arange(1, count + 1)
    tilt = 10 ** (timbre.tilt_db_per_octave * np.log2(np.arange(1, count + 1)) / 20)
    envelope = np.full(count, 10 ** (-45 / 20))
    for centre, width, gain in VOWELS[timbre.vowel]:
        centre, width = centre * timbre.formant_scale, width * timbre.formant_scale
        envelope += 10 ** (gain / 20) / (1 + ((freqs - centre) / (width / 2)) ** 2)
    amps = tilt * envelope
    return amps / np.sqrt(np.sum(amps**2) / 2)


def render_notes(notes: list[tuple[float, float, float]], num_samples: int, sample_rate: int,
                 timbre: Timbre, rng: np.random.Generator) -> np.ndarray:
    """Sing `notes` = [(onset_s, duration_s, midi_pitch)] into a float32 signal of `num_samples`."""
    out = np.zeros(num_samples, np.float32)
    for onset, duration, midi in notes:
        start = int(round(onset * sample_rate))
        stop = min(int(round((onset + duration) * sample_rate)), num_samples)
        if stop - start < 8:
            continue
        out[start:stop] += _sing_note(440.0 * 2 ** ((midi - 69) / 12), stop - start, sample_rate, timbre, rng)
    return out


def _sing_note(f0: float, length: int, sample_rate: int, timbre: Timbre, rng: np.random.Generator
               ) -> np.ndarray:
    t = np.arange(length, dtype=np.float32) / sample_rate
    vib_ramp = np.clip((t - timbre.vibrato_delay) / 0.2, 0.0, 1.0)
    vibrato = 1 + timbre.vibrato_depth * vib_ramp * np.sin(2 * np.pi * timbre.vibrato_hz * t + rng.uniform(0, 6.3))
    phase = (2 * np.pi / sample_rate) * np.cumsum(f0 * vibrato, dtype=np.float64)
    phase = (phase + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    amps = harmonic_amplitudes(f0 * (1 + timbre.vibrato_depth), sample_rate, timbre).astype(np.float32)
    wave = np.zeros(length, np.float32)
    for k, amp in enumerate(amps, start=1):
        wave += amp * np.sin(k * phase)
    envelope = _envelope(length, sample_rate, timbre.attack, timbre.release)
    noise = rng.standard_normal(length).astype(np.float32)
    breath = np.diff(noise, prepend=np.float32(0.0)) * timbre.breath
    return (0.1 * envelope * (wave + breath)).astype(np.float32)


def _envelope(length: int, sample_rate: int, attack: float, release: float) -> np.ndarray:
    env = np.ones(length, np.float32)
    a = min(int(attack * sample_rate), length // 2)
    r = min(int(release * sample_rate), length // 2)
    if a:
        env[:a] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, a, dtype=np.float32))
    if r:
        env[-r:] *= 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, r, dtype=np.float32))
    return env


def with_vowel(timbre: Timbre, vowel: str) -> Timbre:
    if vowel not in VOWELS:
        raise ValueError(f"unknown vowel {vowel!r}; choose from {sorted(VOWELS)}")
    return replace(timbre, vowel=vowel)
