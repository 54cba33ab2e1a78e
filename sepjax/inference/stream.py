"""Live separation (`sepjax stream`): audio from a pipe in, every stem written as its samples are finished.

The input is anything libsndfile reads from a pipe (WAV, FLAC, ...) or raw PCM given its rate, channels and
sample format; its length is unknown until it ends. It is read in blocks of one hop, resampled to the model's
rate on the fly, cut into chunks as soon as a chunk's samples are in, and the finished overlap-added samples are
resampled back and appended to `<out>/<stem>.wav`. An output sample is therefore written at most one chunk plus
one hop of input after it arrived (its right context, plus the block it arrived in), with batch size 1, plus
the compute time of the chunk.

The files grow in place, so they can be read while the stream runs (their WAV headers are completed when the
stream ends or is interrupted); existing stems are not replaced without `overwrite`.
"""

import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sepjax.audio import SUBTYPES, AudioError
from sepjax.errors import InputError, OutputExistsError
from sepjax.inference.separate import InferenceConfig, ModelFn, separate_stream, stats_from_start
from sepjax.inference.separate_files import resampled, sound_blocks, to_channels_stems

RAW_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


@dataclass(frozen=True)
class RawFormat:
    """Headerless little-endian PCM: what `ffmpeg -f s16le`, `arecord -t raw` or `sox -t raw` write."""

    sample_rate: int
    channels: int
    subtype: str = "PCM_16"

    def __post_init__(self):
        if self.sample_rate < 1:
            raise InputError(f"--raw-rate {self.sample_rate}: must be a positive number of Hz")
        if self.channels < 1:
            raise InputError(f"--raw-channels {self.channels}: must be at least 1")
        if self.subtype not in RAW_SUBTYPES:
            raise InputError(f"--raw-format {self.subtype!r}: choose one of {', '.join(RAW_SUBTYPES)}")


class StreamInterrupted(Exception):
    """SIGTERM or SIGINT: stop reading, and close the stems as they stand."""


def open_input(source: str, raw: RawFormat | None) -> sf.SoundFile:
    """`-` is standard input; anything else a path (a named pipe, or a file)."""
    name = "standard input" if source == "-" else source
    if source != "-" and not Path(source).exists():
        raise InputError(f"--in {source}: no such file or pipe")
    target = sys.stdin.fileno() if source == "-" else source
    try:
        if raw is None:
            return sf.SoundFile(target, closefd=False) if source == "-" else sf.SoundFile(target)
        return sf.SoundFile(target, format="RAW", samplerate=raw.sample_rate, channels=raw.channels,
                            subtype=raw.subtype, endian="LITTLE", **({"closefd": False} if source == "-" else {}))
    except sf.LibsndfileError as err:
        hint = "" if raw is not None else " (for headerless PCM, give --raw-rate, --raw-channels and --raw-format)"
        raise AudioError(f"{name}: cannot read audio: {err.error_string}{hint}") from err


def input_blocks(f: sf.SoundFile, frames: int, channels: int, name: str) -> Iterator[np.ndarray]:
    """(channels, ≤frames) blocks as they arrive, until the input ends. A thread does the reading, so that while
    a read waits for a pipe, the main thread still takes SIGTERM and SIGINT."""
    arrived: queue.Queue = queue.Queue(maxsize=64)

    def read() -> None:
        try:
            for block in sound_blocks(f, frames, channels, name):
                arrived.put(block)
        except Exception as err:  # raised again in the reading generator, where the caller sees it
            arrived.put(err)
        arrived.put(None)

    threading.Thread(target=read, name="sepjax-stream-reader", daemon=True).start()
    while True:
        try:
            item = arrived.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is None:
            return
        if isinstance(item, Exception):
            raise item
        yield item


@dataclass
class StreamReport:
    input_seconds: float
    written_seconds: float
    interrupted: bool


def stem_paths(out_dir: Path, stem_names: tuple[str, ...], overwrite: bool) -> dict[str, Path]:
    """The stems' files, refused before anything is read if one exists and `overwrite` is off."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: exists and is not a folder")
    paths = {n: out_dir / f"{n}.wav" for n in stem_names}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace them")
    return paths


def stream_separate(model_fn: ModelFn, in_channels: int, out_channels: int, model_rate: int,
                    stem_names: tuple[str, ...], f: sf.SoundFile, name: str, paths: dict[str, Path],
                    inference: InferenceConfig, bits: str = "float",
                    on_piece: Callable[[int], None] | None = None) -> StreamReport:
    """Separate the input `f` into `paths` as it arrives; returns how much was read and written. `on_piece(n)`
    is called after each piece of n output samples is written."""
    if inference.normalize == "track":
        raise InputError("a stream cannot be normalised by statistics of the whole track: use start or none")
    rate, channels = f.samplerate, f.channels
    hop = inference.plan(None).hop
    block = max(int(hop * rate / model_rate), 1)  # one hop of input at a time bounds the latency
    seen = 0

    def counted(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal seen
        for b in blocks:
            seen += b.shape[-1]
            yield b

    blocks = resampled(counted(input_blocks(f, block, in_channels, name)), rate, model_rate, in_channels, None)
    stats = None
    if inference.normalize == "start":
        stats, blocks = stats_from_start(blocks, inference.chunk)
    pieces = separate_stream(model_fn, blocks, None, in_channels, inference, stats)
    flat = (to_channels_stems(p, channels) for p in pieces)
    back = resampled((p.reshape(-1, p.shape[-1]) for p in flat), model_rate, rate, len(stem_names) * channels,
                     lambda: seen)  # as long as the input, like `separate`
    written, interrupted = 0, False
    paths[stem_names[0]].parent.mkdir(parents=True, exist_ok=True)
    writers = {n: sf.SoundFile(str(paths[n]), "w", rate, channels, subtype=SUBTYPES[bits], format="WAV")
               for n in stem_names}
    handled = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, _interrupt) for s in handled}
    try:
        for piece in back:
            stems = piece.reshape(len(stem_names), channels, -1)
            if not np.all(np.isfinite(stems)):
                raise InputError(f"{name}: the model's output holds NaN or infinite samples (are the bundle's "
                                 f"weights finite?)")
            for n, stem in zip(stem_names, stems, strict=True):
                writers[n].write(stem.T)
                writers[n].flush()
            written += stems.shape[-1]
            if on_piece is not None:
                on_piece(stems.shape[-1])
    except StreamInterrupted:
        interrupted = True
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for w in writers.values():
            w.close()
    return StreamReport(seen / rate, written / rate, interrupted)


def _interrupt(signum, frame) -> None:
    raise StreamInterrupted(signal.Signals(signum).name)

