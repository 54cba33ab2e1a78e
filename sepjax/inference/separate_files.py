"""Separate audio files on disk in blocks: read → (resample) → chunked model → (resample back) → write.

Input is read in blocks and output written in blocks, so memory does not grow with the track.
Each input gets one output folder, built in a hidden staging folder and renamed into place when
complete: a failure leaves nothing behind, and an existing folder is never replaced without
`overwrite`.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from sepjax.audio import SUBTYPES, AudioError, info, to_channels
from sepjax.errors import InputError, OutputExistsError
from sepjax.files import staged_directory
from sepjax.inference.separate import InferenceConfig, ModelFn, NormStats, separate_stream, stats_from_start

BLOCK_SECONDS = 4.0


@dataclass(frozen=True)
class DerivedStem:
    """`name = ±a ± b …` over model stems and `mixture`, e.g. instrumental=mixture-lead_vocal."""

    name: str
    terms: tuple[tuple[float, str], ...]

    @classmethod
    def parse(cls, spec: str, known: tuple[str, ...]) -> "DerivedStem":
        if "=" not in spec:
            raise InputError(f"--derive {spec!r}: expected NAME=EXPR, e.g. instrumental=mixture-vocals")
        name, expr = (s.strip() for s in spec.split("=", 1))
        tokens = re.findall(r"([+-]?)\s*([A-Za-z0-9_]+)", expr.replace(" ", ""))
        if not name or not tokens or "".join(sign + stem for sign, stem in tokens) != expr.replace(" ", ""):
            raise InputError(f"--derive {spec!r}: EXPR must be stems joined by + and -")
        unknown = [stem for _, stem in tokens if stem not in (*known, "mixture")]
        if unknown:
            raise InputError(f"--derive {spec!r}: unknown stem(s) {unknown}; have {list(known)} and mixture")
        return cls(name, tuple((-1.0 if sign == "-" else 1.0, stem) for sign, stem in tokens))


@dataclass(frozen=True)
class OutputOptions:
    out_dir: Path
    format: str = "wav"
    bits: str = "float"
    derive: tuple[DerivedStem, ...] = field(default_factory=tuple)
    overwrite: bool = False

    def __post_init__(self):
        if self.format not in ("wav", "flac"):
            raise InputError(f"output format {self.format!r}: choose wav or flac")
        if self.bits not in SUBTYPES:
            raise InputError(f"bits {self.bits!r}: choose 16, 24 or float")
        if self.format == "flac" and self.bits == "float":
            raise InputError("FLAC cannot store float samples: use --bits 16 or 24")


def audio_inputs(paths: list[Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, output name) for each input file, recursing into folders; plus the inputs that cannot be separated:
    missing paths, and files whose output folder would be another input's or would contain it."""
    suffixes = {f".{ext.lower()}" for ext in sf.available_formats()}
    found, failed = [], []
    for path in paths:
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes):
                found.append((f, f.relative_to(path).with_suffix("")))
        elif path.is_file():
            found.append((path, Path(path.stem)))
        else:
            failed.append(f"{path}: no such file or folder")
    claimed: dict[Path, Path] = {}
    unique = []
    for path, name in found:
        if not _names_a_folder(name):  # `output_folder` refuses it, by name, when its turn comes
            unique.append((path, name))
            continue
        # Separating into a folder removes what --overwrite replaces: two inputs never share one, nor nest.
        clash = next((claimed[n] for n in (name, *name.parents) if n in claimed), None)
        clash = clash or next((p for n, p in claimed.items() if name in n.parents), None)
        if clash is not None:
            failed.append(f"{path}: its output folder {name} clashes with that of {clash}; rename one of them")
            continue
        claimed[name] = path
        unique.append((path, name))
    return unique, failed


def _names_a_folder(name: Path) -> bool:
    """A relative path of ordinary folder names: none empty, `.`, `..` or only dots."""
    return not name.is_absolute() and bool(name.parts) and not any(set(part) <= {"."} for part in name.parts)


def output_folder(out_dir: Path, name: Path, source: Path) -> Path:
    """`out_dir / name`, refused unless it lies strictly inside `out_dir` (symbolic links followed)."""
    if not _names_a_folder(name):
        raise InputError(f"{source}: its output name {str(name)!r} does not name a folder inside {out_dir}; "
                         f"rename the file")
    target = out_dir / name
    root, resolved = out_dir.resolve(), target.resolve()
    if root not in resolved.parents:
        raise InputError(f"{source}: its output folder {target} resolves to {resolved}, outside {out_dir}")
    return target


def _blocks(path: Path, channels: int) -> Iterator[np.ndarray]:
    with sf.SoundFile(str(path)) as f:
        yield from sound_blocks(f, max(int(BLOCK_SECONDS * f.samplerate), 1), channels, str(path))


def sound_blocks(f: sf.SoundFile, frames: int, channels: int, name: str) -> Iterator[np.ndarray]:
    """(channels, ≤frames) float32 blocks of an open file until it ends, mapped to `channels`; non-finite samples
    are an error naming `name`."""
    while True:
        data = f.read(frames, dtype="float32", always_2d=True)
        if not len(data):
            return
        if not np.all(np.isfinite(data)):
            raise AudioError(f"{name}: contains NaN or infinite samples")
        yield to_channels(data.T, channels)


def _stats(path: Path, frames: int) -> NormStats:
    total = total_sq = 0.0
    for block in _blocks(path, 1):
        mono = block[0].astype(np.float64)
        total += mono.sum()
        total_sq += np.square(mono).sum()
    mean = total / frames
    return NormStats(mean, float(np.sqrt(max(total_sq / frames - mean**2, 0.0))) + 1e-8)


def resampled(blocks: Iterator[np.ndarray], rate_in: int, rate_out: int, channels: int,
              length: int | Callable[[], int] | None) -> Iterator[np.ndarray]:
    """Stream-resample (channels, t) blocks, yielding exactly `length` samples in total. A stream's length is
    known only when its blocks end: then `length` is a function called at that point, or None for the input's
    length at the output rate, rounded."""
    stream = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32",
                                                                   quality="HQ")
    emitted = seen = 0
    final = length if isinstance(length, int) else None

    def out(block: np.ndarray) -> Iterator[np.ndarray]:
        nonlocal emitted
        if final is not None:
            block = block[:, : final - emitted]
        emitted += block.shape[-1]
        if block.shape[-1]:
            yield block

    for block in blocks:
        seen += block.shape[-1]
        if stream is not None:
            # soxr's output lags its input by the filter's delay, so it never runs past the rounded length
            block = stream.resample_chunk(np.ascontiguousarray(block.T)).T
        yield from out(block)
    if final is None:
        final = length() if callable(length) else int(round(seen * rate_out / rate_in))
    if stream is not None:
        yield from out(stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T)
    if emitted < final:
        yield np.zeros((channels, final - emitted), np.float32)


def separate_file(model_fn: ModelFn, in_channels: int, out_channels: int, model_rate: int,
                  stem_names: tuple[str, ...], path: Path, name: Path, inference: InferenceConfig,
                  options: OutputOptions) -> Path:
    """Separate one file into `options.out_dir / name / <stem>.<format>`; returns that folder."""
    meta = info(path)
    if meta.frames == 0:
        raise AudioError(f"{path}: empty file")
    if model_rate * meta.frames / meta.samplerate < 1:
        raise AudioError(f"{path}: too short to resample to {model_rate} Hz")
    target = output_folder(Path(options.out_dir), name, path)
    if target.exists() and not options.overwrite:  # checked before the statistics pass, to fail fast
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    stats = _stats(path, meta.frames) if inference.normalize == "track" else None
    model_length = int(round(meta.frames * model_rate / meta.samplerate))
    blocks = resampled(_blocks(path, in_channels), meta.samplerate, model_rate, in_channels, model_length)
    if inference.normalize == "start":
        stats, blocks = stats_from_start(blocks, inference.chunk)
    with staged_directory(target, overwrite=options.overwrite) as staging:
        _write_stems(model_fn, blocks, model_length, in_channels, out_channels, model_rate, stem_names, path, meta,
                     inference, options, stats, staging)
    return target


def _write_stems(model_fn, blocks, model_length, in_channels, out_channels, model_rate, stem_names, path, meta,
                 inference, options, stats, staging) -> None:
    channels = meta.channels
    subtype = SUBTYPES[options.bits]
    names = [*stem_names, *(d.name for d in options.derive)]
    writers = {n: sf.SoundFile(str(staging / f"{n}.{options.format}"), "w", meta.samplerate, channels,
                               subtype=subtype, format=options.format.upper()) for n in names}
    pieces = separate_stream(model_fn, blocks, model_length, in_channels, inference, stats)
    flat = (to_channels_stems(p, channels) for p in pieces)
    back = resampled((p.reshape(-1, p.shape[-1]) for p in flat), model_rate, meta.samplerate,
                      len(stem_names) * channels, meta.frames)
    try:
        with sf.SoundFile(str(path)) as mixture_file:
            for piece in back:
                stems = piece.reshape(len(stem_names), channels, -1)
                if not np.all(np.isfinite(stems)):
                    raise InputError(f"{path}: the model's output holds NaN or infinite samples (are the bundle's "
                                     f"weights finite?); nothing was written for this file")
                mixture = mixture_file.read(stems.shape[-1], dtype="float32", always_2d=True).T
                sources = dict(zip(stem_names, stems, strict=True)) | {"mixture": mixture}
                for n, stem in zip(stem_names, stems, strict=True):
                    writers[n].write(stem.T)
                for d in options.derive:
                    writers[d.name].write(sum(sign * sources[s] for sign, s in d.terms).T)
    finally:
        for w in writers.values():
            w.close()


def to_channels_stems(stems: np.ndarray, channels: int) -> np.ndarray:
    """(stems, C, t) → (stems, channels, t) with the same mono/stereo policy as inputs."""
    return np.stack([to_channels(s, channels) for s in stems])
