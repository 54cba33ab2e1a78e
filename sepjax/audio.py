"""Audio I/O: segment reads, resampling (soxr via librosa), channel policy, atomic writes."""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import librosa
import numpy as np
import soundfile as sf

from sepjax.errors import InputError, OutputExistsError

SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


class AudioError(InputError):
    """A file that cannot be read or written as audio; the message names it."""


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    samplerate: int
    channels: int


def info(path: str | Path, stream: int | None = None) -> AudioInfo:
    """Header only (frames, rate, channels); never decodes samples. `stream` selects a .stem.mp4 substream."""
    if stream is not None:
        stempeg = _stempeg(path)
        try:
            meta = stempeg.Info(str(path))
            return AudioInfo(int(meta.samples(stream)), int(meta.rate(stream)), int(meta.channels(stream)))
        except Exception as err:
            raise AudioError(f"{path}: stream {stream} not readable ({err})") from err
    try:
        meta = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for bad files
        raise AudioError(f"{path}: not readable as audio ({err})") from err
    return AudioInfo(meta.frames, meta.samplerate, meta.channels)


def _stempeg(path):
    """stempeg (MUSDB18 .stem.mp4) needs the ffmpeg binaries; say so by name when they are missing."""
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioError(f"{path}: reading .stem.mp4 needs ffmpeg and ffprobe on PATH")
    try:
        import stempeg
    except ImportError as err:
        raise AudioError(f"{path}: reading .stem.mp4 needs `pip install sepjax[musdb]` ({err})") from err
    return stempeg


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """(C, T) → (channels, T): mono is duplicated to stereo, stereo is averaged to mono."""
    have = audio.shape[0]
    if have == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(audio, channels, axis=0)
    raise AudioError(f"cannot convert {have} channels to {channels}")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling along the last axis with soxr (librosa's `soxr_hq`)."""
    if orig_sr == target_sr:
        return audio
    return librosa.resample(audio, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq", axis=-1)


def read(path: str | Path, *, start: int = 0, stop: int | None = None, sample_rate: int | None = None,
         channels: int | None = None) -> tuple[np.ndarray, int]:
    """Frames [start, stop) of a file as float32 (C, T), optionally resampled and re-channelled.

    `start`/`stop` count frames at the file's own rate; only that span is decoded.
    """
    try:
        data, file_sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as err:
        raise AudioError(f"{path}: cannot decode ({err})") from err
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: contains NaN or infinite samples")
    audio = data.T
    if channels is not None:
        audio = to_channels(audio, channels)
    rate = file_sr
    if sample_rate is not None and sample_rate != file_sr:
        audio = resample(audio, file_sr, sample_rate).astype(np.float32)
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), rate


def read_segment(path: str | Path, start_seconds: float, num_samples: int, sample_rate: int,
                 channels: int, stream: int | None = None) -> np.ndarray:
    """Exactly `num_samples` at `sample_rate` starting at `start_seconds`, zero-padded past the end.

    Decodes only the needed span of the file (plus a few frames of resampler context); with
    `stream`, the span of that substream of a .stem.mp4 (through stempeg/ffmpeg).
    """
    if stream is not None:
        stempeg = _stempeg(path)
        try:
            audio, _ = stempeg.read_stems(str(path), stem_id=stream, start=start_seconds,
                                          duration=num_samples / sample_rate, sample_rate=sample_rate,
                                          dtype=np.float32)
        except Exception as err:
            raise AudioError(f"{path}: cannot decode stream {stream} ({err})") from err
        return fit(to_channels(np.asarray(audio, np.float32).T, channels), num_samples)
    meta = info(path)
    file_sr = meta.samplerate
    first = max(int(round(start_seconds * file_sr)), 0)
    if file_sr == sample_rate:
        count = num_samples
        audio, _ = read(path, start=first, stop=min(first + count, meta.frames), channels=channels)
    else:
        margin = 64
        count = int(np.ceil(num_samples * file_sr / sample_rate)) + margin
        audio, _ = read(path, start=first, stop=min(first + count, meta.frames), channels=channels)
        audio = resample(audio, file_sr, sample_rate)
    return fit(audio, num_samples)


def fit(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Trim or zero-pad the last axis to `num_samples` (float32)."""
    if audio.shape[-1] >= num_samples:
        return np.ascontiguousarray(audio[..., :num_samples], dtype=np.float32)
    pad = [(0, 0)] * (audio.ndim - 1) + [(0, num_samples - audio.shape[-1])]
    return np.pad(audio, pad).astype(np.float32)


def write(path: str | Path, audio: np.ndarray, sample_rate: int, *,
          bits: Literal["16", "24", "float"] = "float", overwrite: bool = False) -> Path:
    """Write (C, T) audio atomically: a temp file in the same folder, then a rename.

    Refuses to replace an existing file unless `overwrite`; the format follows the suffix.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: refusing to write non-finite samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(suffix)
    if fmt is None:
        raise AudioError(f"{path}: unsupported output format {suffix!r} (use .wav or .flac)")
    subtype = SUBTYPES[bits]
    if fmt == "FLAC" and bits == "float":
        raise AudioError(f"{path}: FLAC cannot store float samples; use bits 16 or 24")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, audio.T, sample_rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
