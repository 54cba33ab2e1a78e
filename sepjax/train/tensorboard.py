"""TensorBoard logging with tensorboardX: scalars and peak-normalised audio."""

from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter


def peak_normalise(audio: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale so the largest absolute sample is `peak` (silence stays silent)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (peak / top)).astype(np.float32) if top > 0 else audio.astype(np.float32)


class RunLogger:
    """A SummaryWriter for one run directory."""

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(str(self.logdir))

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def audio(self, step: int, tag: str, wave: np.ndarray, sample_rate: int) -> None:
        """`wave` is (channels, time) or (time,); written peak-normalised for playback."""
        wave = np.asarray(wave, dtype=np.float32)
        wave = wave.T if wave.ndim == 2 else wave[:, None]
        self.writer.add_audio(tag, peak_normalise(wave), step, sample_rate=sample_rate)

    def separation_audio(self, step: int, mixture: np.ndarray, targets: np.ndarray, estimates: np.ndarray,
                         stem_names: list[str], sample_rate: int) -> None:
        """The mixture, then each target stem next to its estimate."""
        self.audio(step, "mixture", mixture, sample_rate)
        for name, target, estimate in zip(stem_names, targets, estimates, strict=True):
            self.audio(step, f"target/{name}", target, sample_rate)
            self.audio(step, f"estimate/{name}", estimate, sample_rate)

    def close(self) -> None:
        self.writer.close()
