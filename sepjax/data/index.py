"""The track index: every layout becomes one list of tracks, built from file headers and cached.

The cache (`.sepjax-index-<layout>.json` next to the data) stores each file's size and mtime;
any change to them, or to the set of files, rebuilds the index.
"""

import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from sepjax.audio import AudioError, info, read
from sepjax.data.layouts import Layout, LayoutError, StemRef, ref_path
from sepjax.files import write_text_atomic

CACHE_VERSION = 1


@dataclass(frozen=True)
class StemFile:
    path: str
    frames: int
    sample_rate: int
    channels: int
    stream: int | None = None
    """Substream of a multi-stream file (MUSDB18 .stem.mp4); None for plain audio files."""


@dataclass(frozen=True)
class Track:
    """One song/utterance: its stems (missing ones are simply absent) and shared audio facts."""

    track_id: str
    split: str
    stems: dict[str, StemFile]
    sample_rate: int
    frames: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass
class TrackIndex:
    """All tracks of a dataset plus what was skipped while indexing, and why."""

    root: str
    layout: str
    stems: tuple[str, ...]
    tracks: list[Track]
    skipped: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Track]:
        return [t for t in self.tracks if t.split == name]

    def splits(self) -> list[str]:
        return sorted({t.split for t in self.tracks})


def _fingerprint(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _load_track(track_id: str, split: str, files: dict[str, StemRef], expected_sr: int | None) -> Track:
    stems = {}
    for name, ref in files.items():
        path, stream = ref if isinstance(ref, tuple) else (ref, None)
        meta = info(path, stream)
        stems[name] = StemFile(str(path), meta.frames, meta.samplerate, meta.channels, stream)
    if not stems:
        raise AudioError(f"{track_id}: no stem files found")
    rates = {s.sample_rate for s in stems.values()}
    if len(rates) > 1:
        raise AudioError(f"{track_id}: stems have different sample rates {sorted(rates)}")
    rate = rates.pop()
    if expected_sr is not None and rate != expected_sr:
        raise AudioError(f"{track_id}: sample rate {rate} Hz, expected {expected_sr} Hz")
    lengths = {name: s.frames for name, s in stems.items()}
    if len(set(lengths.values())) > 1:
        raise AudioError(f"{track_id}: stems of unequal length {lengths}")
    channels = max(s.channels for s in stems.values())
    return Track(track_id, split, stems, rate, next(iter(lengths.values())), channels)


def build_index(root: str | Path, layout: Layout, *, expected_sample_rate: int | None = None,
                use_cache: bool = True) -> TrackIndex:
    """Index `root` with `layout`; tracks that fail a check are skipped and listed in `.skipped`."""
    root = Path(root)
    entries = list(layout.scan(root))
    if not entries:
        raise LayoutError(f"{root}: no tracks found for layout {layout.name!r}")
    all_files = sorted({ref_path(r) for _, _, files in entries for r in files.values()})
    key = {"version": CACHE_VERSION, "layout": asdict(layout), "expected_sr": expected_sample_rate,
           "fingerprint": _fingerprint(all_files),
           "entries": [[t, s, sorted(f"{n}={r}" for n, r in f.items())] for t, s, f in entries]}
    key = json.loads(json.dumps(key))  # compare like with like after the JSON round trip
    cache = root / f".sepjax-index-{layout.name}.json"
    if use_cache and cache.exists():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key:
                return _from_json(stored["index"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache is rebuilt below
    tracks, skipped = [], []
    for track_id, split, files in entries:
        try:
            tracks.append(_load_track(track_id, split, files, expected_sample_rate))
        except AudioError as err:
            skipped.append(str(err))
    if not tracks:
        raise LayoutError(f"{root}: no usable tracks; problems: " + "; ".join(skipped[:5]))
    index = TrackIndex(str(root), layout.name, layout.stems, tracks, skipped)
    if use_cache:
        _write_json_atomic(cache, {"key": key, "index": _to_json(index)})
    return index


def with_training_tracks(index: TrackIndex, others: list[TrackIndex], split: str) -> TrackIndex:
    """`index` plus the `split` tracks of `others`, their ids prefixed with their root so that none collide; the
    other splits of `others` are left out, so validation and test sets stay `index`'s own."""
    tracks = list(index.tracks)
    skipped = list(index.skipped)
    for other in others:
        if other.stems != index.stems:
            raise LayoutError(f"{other.root}: stems {list(other.stems)} differ from {index.root}'s "
                              f"{list(index.stems)}")
        tracks += [replace(t, track_id=f"{other.root}:{t.track_id}") for t in other.split(split)]
        skipped += other.skipped
    return TrackIndex(index.root, index.layout, index.stems, tracks, skipped)


def _to_json(index: TrackIndex) -> dict:
    return {**asdict(index), "stems": list(index.stems)}


def _from_json(data: dict) -> TrackIndex:
    tracks = [Track(t["track_id"], t["split"], {k: StemFile(**v) for k, v in t["stems"].items()},
                    t["sample_rate"], t["frames"], t["channels"]) for t in data["tracks"]]
    return TrackIndex(data["root"], data["layout"], tuple(data["stems"]), tracks, list(data["skipped"]))


def _write_json_atomic(path: Path, data: dict) -> None:
    with contextlib.suppress(OSError):  # a read-only dataset simply goes uncached
        write_text_atomic(path, json.dumps(data))


def load_track(track: Track, stem_names: tuple[str, ...], sample_rate: int, channels: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Whole-track targets (stems, channels, T) at `sample_rate`, zeros for missing stems, and the presence mask."""
    parts, present = [], []
    for name in stem_names:
        if name in track.stems:
            audio, _ = read(track.stems[name].path, sample_rate=sample_rate, channels=channels)
            parts.append(audio)
            present.append(True)
        else:
            parts.append(None)
            present.append(False)
    length = min(p.shape[-1] for p in parts if p is not None)
    targets = np.stack([p[:, :length] if p is not None else np.zeros((channels, length), np.float32) for p in parts])
    return targets, np.array(present)
