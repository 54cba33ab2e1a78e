"""grain training pipelines: source → seed → shuffle → random segment (+ augment) → batch → iterator.

Batches are NumPy dicts: mixture (B, C, T), targets (B, N, C, T), mask (B, N) with 1 where the
stem exists in the track, and per example the silence_retries and read_failures it took. The
mixture is always the sum of the (augmented) targets. Same seed, same batches, with any number
of workers; the iterator's `get_state()` / `set_state()` resume exactly.
"""

import warnings
from dataclasses import dataclass, field

import grain
import numpy as np

from sepjax.audio import AudioError, read_segment
from sepjax.data.augment import AugmentConfig, augment_stems
from sepjax.data.index import Track, TrackIndex
from sepjax.errors import InputError


@dataclass(frozen=True)
class PipelineConfig:
    sample_rate: int
    segment_seconds: float
    batch_size: int
    channels: int = 1
    """1: stereo files are averaged to mono; 2: mono files are duplicated to stereo."""
    split: str = "train"
    seed: int = 0
    silence_db: float = -60.0
    """Reject segments whose mixture RMS is below this (dBFS) ..."""
    max_silence_retries: int = 8
    """... at most this many times, then keep the last draw (sampling never loops forever)."""
    max_read_failures: int = 16
    """A file that fails to decode is reported and another track drawn, up to this many times per example."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 0
    read_threads: int = 8
    prefetch: int = 32
    shard_index: int | None = None
    shard_count: int | None = None
    """Defaults: this JAX process's index and the number of processes."""

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))


class SegmentSampler:
    """grain random map: a track → one augmented training example (dict of NumPy arrays)."""

    def __init__(self, tracks: list[Track], stems: tuple[str, ...], config: PipelineConfig):
        self.tracks = tracks
        self.stems = stems
        self.config = config
        self.holders = {s: [i for i, t in enumerate(tracks) if s in t.stems] for s in stems}

    def __call__(self, track: Track, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg = self.config
        retries = failures = 0
        while True:
            try:
                targets, mask = self._draw(track, rng)
            except AudioError as err:
                failures += 1
                if failures > cfg.max_read_failures:
                    raise AudioError(f"{failures} unreadable draws in a row; last: {err}") from err
                warnings.warn(f"skipping unreadable audio, drawing another track: {err}", stacklevel=2)
                track = self.tracks[rng.integers(len(self.tracks))]
                continue
            rms = float(np.sqrt(np.mean(np.square(targets.sum(axis=0)))))
            if 20 * np.log10(rms + 1e-12) >= cfg.silence_db or retries == cfg.max_silence_retries:
                break
            retries += 1
        targets = augment_stems(targets, mask, cfg.augment, rng)
        return {"mixture": targets.sum(axis=0), "targets": targets, "mask": mask,
                "silence_retries": np.int32(retries), "read_failures": np.int32(failures)}

    def _draw(self, track: Track, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        # A speed r reads r·segment seconds resampled to segment samples: played at the training rate, r× as fast.
        speed = cfg.augment.speed
        rate = cfg.sample_rate if speed == (1.0, 1.0) else int(round(cfg.sample_rate / rng.uniform(*speed)))
        seconds = cfg.segment_seconds if rate == cfg.sample_rate else cfg.segment_samples / rate
        base = _random_start(track, seconds, rng)
        shift = cfg.augment.max_shift_seconds
        targets = np.zeros((len(self.stems), cfg.channels, cfg.segment_samples), np.float32)
        mask = np.zeros(len(self.stems), np.float32)
        for i, stem in enumerate(self.stems):
            source, start = track, base
            if cfg.augment.remix_prob > 0 and rng.random() < cfg.augment.remix_prob and self.holders[stem]:
                source = self.tracks[self.holders[stem][rng.integers(len(self.holders[stem]))]]
                start = _random_start(source, seconds, rng)
            if shift > 0:
                start = max(start + rng.uniform(-shift, shift), 0.0)
            if stem not in source.stems:
                continue
            file = source.stems[stem]
            targets[i] = read_segment(file.path, start, cfg.segment_samples, rate, cfg.channels, stream=file.stream)
            mask[i] = 1.0
        return targets, mask


def _random_start(track: Track, seconds: float, rng: np.random.Generator) -> float:
    return float(rng.uniform(0.0, max(track.seconds - seconds, 0.0)))


def stack_examples(examples) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def training_dataset(index: TrackIndex, config: PipelineConfig) -> grain.IterDataset:
    """An endless, shuffled, sharded, batched grain dataset over `config.split` of `index`."""
    tracks = index.split(config.split)
    if not tracks:
        raise InputError(f"{index.root}: split {config.split!r} has no tracks (have {index.splits()})")
    shard_index, shard_count = config.shard_index, config.shard_count
    if shard_index is None or shard_count is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    ds = grain.MapDataset.source(tracks).seed(config.seed).shuffle().repeat()
    ds = ds[shard_index::shard_count]
    ds = ds.random_map(SegmentSampler(tracks, index.stems, config))
    ds = ds.batch(config.batch_size, drop_remainder=True, batch_fn=stack_examples)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                              prefetch_buffer_size=config.prefetch))
    if config.num_workers > 0:
        _absl_flags_ready()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.num_workers))
    return it


def input_level(index: TrackIndex, config: PipelineConfig, examples: int = 64, seed: int = 0) -> float:
    """The median standard deviation of the mono downmix of `examples` training mixtures drawn as training draws
    them (augmentation included), with a fixed seed: the level at which a model trained on this pipeline sees
    its input. Inference z-scores an input and scales it to this level (`Bundle.input_std`)."""
    tracks = index.split(config.split)
    if not tracks:
        raise InputError(f"{index.root}: split {config.split!r} has no tracks (have {index.splits()})")
    if examples < 1:
        raise InputError(f"examples={examples} must be >= 1")
    sampler = SegmentSampler(tracks, index.stems, config)
    rng = np.random.default_rng(seed)
    stds = [float(np.std(sampler(tracks[rng.integers(len(tracks))], rng)["mixture"].mean(axis=0)))
            for _ in range(examples)]
    return float(np.median(stds))


def _absl_flags_ready() -> None:
    """grain's worker processes read absl flags; outside an absl app nobody has parsed them."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
