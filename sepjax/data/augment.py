"""Stem-level augmentations. Each is deterministic given the generator; the caller re-sums the mixture."""

from dataclasses import dataclass

import numpy as np

from sepjax.errors import InputError


@dataclass(frozen=True)
class AugmentConfig:
    """All off by default. Probabilities are per stem unless stated."""

    gain_db: tuple[float, float] = (0.0, 0.0)
    """Uniform random gain per stem, in dB."""
    remix_prob: float = 0.0
    """Per stem: draw it from a different random track (demucs/MSST-style remixing)."""
    channel_swap_prob: float = 0.0
    polarity_flip_prob: float = 0.0
    subset_prob: float = 0.0
    """Per example: keep a random non-empty subset of the present stems; the rest become silent targets."""
    max_shift_seconds: float = 0.0
    """Per stem: move its read position by up to ± this much (applied when the segment is read)."""
    speed: tuple[float, float] = (1.0, 1.0)
    """Per example: play every stem r times as fast, r uniform in this range (applied when the segment is read,
    by resampling): tempo and pitch change together, and with the pitch the spectral envelope, as on tape."""

    def __post_init__(self):
        lo, hi = self.gain_db
        if lo > hi:
            raise InputError(f"gain_db range {self.gain_db} is reversed")
        for name in ("remix_prob", "channel_swap_prob", "polarity_flip_prob", "subset_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name}={getattr(self, name)} must be a probability")
        if self.max_shift_seconds < 0:
            raise InputError("max_shift_seconds must be >= 0")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise InputError(f"speed range {self.speed} must be positive and increasing")


def augment_stems(stems: np.ndarray, mask: np.ndarray, config: AugmentConfig, rng: np.random.Generator
                  ) -> np.ndarray:
    """Gain, channel swap, polarity flip and subset selection on (stems, channels, time)."""
    stems = stems.copy()
    count, channels = stems.shape[:2]
    lo, hi = config.gain_db
    if hi > lo or lo != 0.0:
        stems *= (10 ** (rng.uniform(lo, hi, size=count) / 20)).astype(np.float32)[:, None, None]
    if channels == 2 and config.channel_swap_prob > 0:
        swap = rng.random(count) < config.channel_swap_prob
        stems[swap] = stems[swap, ::-1]
    if config.polarity_flip_prob > 0:
        flip = rng.random(count) < config.polarity_flip_prob
        stems[flip] *= -1
    if config.subset_prob > 0 and rng.random() < config.subset_prob:
        present = np.flatnonzero(mask > 0)
        if present.size > 1:
            keep = rng.random(present.size) < 0.5
            if not keep.any():
                keep[rng.integers(present.size)] = True
            stems[present[~keep]] = 0.0
    return stems
