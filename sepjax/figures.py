"""Review figures rendered with matplotlib, as RGB arrays for TensorBoard and as PNG files.

- `plot_spectrogram`: one spectrogram on a matplotlib axis (the notebooks draw with it).
- `spectrogram_figure`: one stem's target next to its estimate, on a log frequency axis in Hz, time in seconds,
  a perceptual colour map and a colour bar in dB. Both panels share one dB scale, referenced to the louder.
- `metric_history_figure`: a metric per stem over training steps (the validation SI-SDR curves).
"""

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sepjax.files import write_bytes_atomic

FLOOR_DB = -80.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: figures are rendered to arrays and files only
    import matplotlib.pyplot as plt

    return plt


def magnitude_db(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(freqs, frames) STFT magnitude of the channel mean, in dB (unreferenced)."""
    import librosa

    mono = np.nan_to_num(np.asarray(wave, np.float32).reshape(-1, np.shape(wave)[-1]).mean(axis=0),
                         nan=0.0, posinf=0.0, neginf=0.0)
    magnitude = np.abs(librosa.stft(mono, n_fft=n_fft, hop_length=hop))
    return 20 * np.log10(np.maximum(magnitude, 1e-10))


def _to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def plot_spectrogram(ax, wave: np.ndarray, sample_rate: int, *, n_fft: int = 1024, hop: int = 256,
                     reference_db: float | None = None):
    """Draw `wave`'s spectrogram on `ax`: log frequency in Hz, time in seconds, magma, dB below `reference_db`
    (default: its own peak), floored at −80 dB. Returns the mesh, for a colour bar."""
    db = magnitude_db(wave, n_fft, hop)
    top = float(db.max()) if reference_db is None else reference_db
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    times = np.arange(db.shape[1]) * hop / sample_rate
    # The DC bin has no place on a log axis.
    mesh = ax.pcolormesh(times, freqs[1:], np.clip(db[1:] - top, FLOOR_DB, 0.0), cmap="magma", vmin=FLOOR_DB,
                         vmax=0.0, shading="nearest")
    ax.set_yscale("log")
    ax.set_ylim(max(freqs[1], 30.0), sample_rate / 2)
    ax.set_xlim(0, np.shape(wave)[-1] / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return mesh


def spectrogram_figure(target: np.ndarray, estimate: np.ndarray, sample_rate: int, title: str = "",
                       n_fft: int = 1024, hop: int = 256, dpi: int = 100) -> np.ndarray:
    """(height, width, 3) uint8: target | estimate spectrograms of one stem, with axes and a dB colour bar."""
    plt = _pyplot()
    top = max(float(magnitude_db(w, n_fft, hop).max()) for w in (target, estimate))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), dpi=dpi, sharey=True, constrained_layout=True)
    mesh = None
    for ax, wave, name in zip(axes, (target, estimate), ("target", "estimate"), strict=True):
        mesh = plot_spectrogram(ax, wave, sample_rate, n_fft=n_fft, hop=hop, reference_db=top)
        ax.set_title(f"{title} {name}".strip())
    axes[1].set_ylabel("")
    fig.colorbar(mesh, ax=axes, label="dB", pad=0.01)
    image = _to_rgb(fig)
    plt.close(fig)
    return image


def metric_history_figure(steps: Sequence[int], values: dict[str, Sequence[float]], ylabel: str,
                          dpi: int = 100) -> np.ndarray:
    """(height, width, 3) uint8: one line per stem of `values[stem][i]` at `steps[i]`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=dpi, constrained_layout=True)
    for stem, series in values.items():
        ax.plot(steps, series, marker="o", label=stem)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    image = _to_rgb(fig)
    plt.close(fig)
    return image


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB array as a PNG, atomically (a temp file renamed into place)."""
    buffer = io.BytesIO()
    _pyplot().imsave(buffer, image, format="png")
    return write_bytes_atomic(path, buffer.getvalue())
