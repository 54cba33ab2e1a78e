"""TensorBoard logging with tensorboardX: scalars, peak-normalised audio and matplotlib figures."""

import shutil
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter

from sepjax.errors import UserError


def peak_normalise(audio: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """Scale so the largest absolute sample is `peak` (silence stays silent)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return (audio * (peak / top)).astype(np.float32) if top > 0 else audio.astype(np.float32)


QUEUE_EVENTS = 1000


class LogError(UserError, OSError):
    """The TensorBoard log can no longer be written (usually a full disk); the message names its folder."""


class RunLogger:
    """A SummaryWriter for one run directory.

    tensorboardX writes events from a background thread, which dies on the first failed write (a full disk) and
    leaves later writes blocked on its full queue for ever. Every event first checks that thread and raises
    LogError instead, and `close` then releases the writer without waiting for it. The queue holds more events
    than one call writes, so a writer that dies between a check and its event cannot block that event either.
    """

    def __init__(self, logdir: str | Path):
        self.logdir = Path(logdir)
        self.writer = SummaryWriter(str(self.logdir), max_queue=QUEUE_EVENTS)

    def _worker_alive(self) -> bool:
        worker = getattr(self.writer.file_writer.event_writer, "_worker", None)
        return worker is None or worker.is_alive()

    def check(self) -> None:
        """Raise LogError if events can no longer be written."""
        if not self._worker_alive():
            free = shutil.disk_usage(self.logdir).free / 2**20
            raise LogError(f"{self.logdir}: TensorBoard events can no longer be written "
                           f"(the writer failed; {free:.0f} MiB free on that disk)")

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        for name, value in values.items():
            self.check()
            self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def audio(self, step: int, tag: str, wave: np.ndarray, sample_rate: int) -> None:
        """`wave` is (channels, time) or (time,); written peak-normalised for playback."""
        self.check()
        wave = np.nan_to_num(np.asarray(wave, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        wave = wave.T if wave.ndim == 2 else wave[:, None]
        self.writer.add_audio(tag, peak_normalise(wave), step, sample_rate=sample_rate)

    def separation_audio(self, step: int, mixture: np.ndarray, targets: np.ndarray, estimates: np.ndarray,
                         stem_names: list[str], sample_rate: int, prefix: str = "") -> None:
        """The mixture, then each target stem next to its estimate."""
        self.audio(step, f"{prefix}mixture", mixture, sample_rate)
        for name, target, estimate in zip(stem_names, targets, estimates, strict=True):
            self.audio(step, f"{prefix}target/{name}", target, sample_rate)
            self.audio(step, f"{prefix}estimate/{name}", estimate, sample_rate)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        """An RGB image (height, width, 3), e.g. a figure from `sepjax.figures`."""
        self.check()
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def spectrograms(self, step: int, targets: np.ndarray, estimates: np.ndarray, stem_names: list[str],
                     sample_rate: int, prefix: str = "") -> None:
        """One figure per stem: target and estimate spectrograms side by side (`figures.spectrogram_figure`)."""
        from sepjax.figures import spectrogram_figure

        for name, target, estimate in zip(stem_names, targets, estimates, strict=True):
            self.image(step, f"{prefix}spectrogram/{name}", spectrogram_figure(target, estimate, sample_rate, name))

    def close(self) -> None:
        """Flush and close. A failed writer is released without flushing (its events are lost either way) and
        marked closed, so that tensorboardX's exit handler does not try again and print a traceback at exit."""
        event_writer = self.writer.file_writer.event_writer
        try:
            if self._worker_alive():
                self.writer.close()
                return
        finally:
            event_writer._closed = True
        # The events still queued would go to the dead thread through a pipe nobody reads; without this the
        # process would wait for that pipe at exit, for ever.
        queue = getattr(event_writer, "_event_queue", None)
        if queue is not None:
            queue.cancel_join_thread()
