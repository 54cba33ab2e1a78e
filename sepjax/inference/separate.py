"""Chunked overlap-add inference with bounded memory.

The signal (channels, T) is z-scored on its mono downmix, padded by `chunk − hop` on the left
(and up to a whole number of hops on the right) with reflect, constant or replicate padding,
cut into chunks `hop` apart, run through the model in fixed-shape batches (one compilation;
the last batch is zero-padded), windowed, overlap-added, divided by the summed window, trimmed
and de-normalised.

`Chunker` and `StreamingStitcher` do this incrementally: blocks of input go in, finished
samples come out, and memory stays O(chunk × batch × stems) whatever the track length. A plan
without a length is a live stream's: the chunks it cuts before the end are the same, and the end
(right padding, the last chunk's full emission) is settled when the input ends.

Normalisation `track` z-scores with the whole signal's statistics; `start` with those of its first
chunk, which is all a live stream has before its first output; `none` leaves the levels as they are.

`shifts` (demucs-style random shifts) runs the stream that many times, each with the chunk grid moved by a
random offset of up to one hop (the signal delayed by that many samples of silence, and the estimates advanced
back), and averages the estimates as they are finished, so memory stays bounded.
"""

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from sepjax.errors import InputError

PaddingMode = Literal["reflect", "constant", "replicate"]
WindowName = Literal["hann", "triangular", "rectangular"]
Normalization = Literal["track", "start", "none"]
ModelFn = Callable[[np.ndarray], np.ndarray]
"""(batch, channels, chunk) → (batch, stems, channels_out, chunk), NumPy in and out."""


@dataclass(frozen=True)
class NormStats:
    mean: float
    std: float


def normalize(audio: np.ndarray, eps: float = 1e-8) -> tuple[np.ndarray, NormStats]:
    """Z-score with the mean and std of the mono downmix; returns the stats to undo it."""
    mono = audio.mean(axis=0)
    stats = NormStats(float(mono.mean()), float(mono.std()) + eps)
    return ((audio - stats.mean) / stats.std).astype(np.float32), stats


def denormalize(stems: np.ndarray, stats: NormStats) -> np.ndarray:
    return (np.asarray(stems, np.float64) * stats.std + stats.mean).astype(np.float32)


def stats_from_start(blocks: Iterable[np.ndarray], count: int) -> tuple[NormStats, Iterator[np.ndarray]]:
    """The statistics of the first `count` samples of a stream of (channels, t) blocks (of all of it, if it is
    shorter), and the whole stream again. Reads only as far as it must."""
    if count < 1:
        raise InputError(f"statistics need at least one sample, not {count}")
    blocks = iter(blocks)
    head = []
    have = 0
    for block in blocks:
        head.append(np.asarray(block, np.float32))
        have += head[-1].shape[-1]
        if have >= count:
            break
    if not have:
        raise InputError("cannot separate an empty signal")
    _, stats = normalize(np.concatenate(head, axis=-1)[:, :count])
    return stats, itertools.chain(head, blocks)


def chunk_window(name: WindowName, size: int) -> np.ndarray:
    """Overlap-add weights, sampled at half-sample offsets so no weight is exactly zero."""
    centres = (np.arange(size) + 0.5) / size
    if name == "hann":
        return (0.5 - 0.5 * np.cos(2 * np.pi * centres)).astype(np.float64)
    if name == "triangular":
        return (1.0 - np.abs(2.0 * centres - 1.0)).astype(np.float64)
    if name == "rectangular":
        return np.ones(size, np.float64)
    raise InputError(f"unknown window {name!r}; choose hann, triangular or rectangular")


@dataclass(frozen=True)
class ChunkPlan:
    """Where the chunks of a `length`-sample signal fall, in padded coordinates; `length` None for a stream whose
    length is known only at its end (`ended`)."""

    length: int | None
    chunk: int
    hop: int

    def __post_init__(self):
        if self.length is not None and self.length < 1:
            raise InputError("cannot separate an empty signal")
        if not 0 < self.hop <= self.chunk:
            raise InputError(f"hop {self.hop} must be in (0, chunk={self.chunk}]")

    @classmethod
    def from_overlap(cls, length: int | None, chunk: int, overlap: float) -> "ChunkPlan":
        if not 0.0 <= overlap < 1.0:
            raise InputError(f"overlap {overlap} must be in [0, 1)")
        return cls(length, chunk, max(int(round(chunk * (1 - overlap))), 1))

    def ended(self, length: int) -> "ChunkPlan":
        return ChunkPlan(length, self.chunk, self.hop)

    @property
    def pad_left(self) -> int:
        return self.chunk - self.hop

    @property
    def num_chunks(self) -> int:
        if self.length is None:
            raise ValueError("a stream's plan has no chunk count until the stream ends")
        return -(-(self.pad_left + self.length - self.chunk) // self.hop) + 1 if (
            self.pad_left + self.length > self.chunk) else 1

    @property
    def padded_length(self) -> int:
        return (self.num_chunks - 1) * self.hop + self.chunk

    @property
    def pad_right(self) -> int:
        return self.padded_length - self.pad_left - self.length


def pad_edges(audio: np.ndarray, left: int, right: int, mode: PaddingMode) -> np.ndarray:
    """Pad the time axis; reflect falls back to replicate when there is one sample to reflect."""
    if mode not in ("reflect", "constant", "replicate"):
        raise InputError(f"unknown padding {mode!r}; choose reflect, constant or replicate")
    if mode == "reflect" and audio.shape[-1] < 2:
        mode = "replicate"
    np_mode = {"reflect": "reflect", "constant": "constant", "replicate": "edge"}[mode]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(left, right)], mode=np_mode)


class Chunker:
    """Blocks of (channels, t) in, (channels, chunk) chunks out, in order. With a length-free plan, `finish`
    settles the plan (`self.plan`) from the samples seen."""

    def __init__(self, plan: ChunkPlan, channels: int, padding: PaddingMode = "reflect"):
        self.plan, self.padding = plan, padding
        self.head = np.zeros((channels, 0), np.float32)  # first real samples, for left padding
        self.tail = np.zeros((channels, 0), np.float32)  # last real samples, for right padding
        self.buffer = np.zeros((channels, 0), np.float32)  # padded-stream samples not yet chunked
        self.seen = 0
        self.started = False

    def feed(self, block: np.ndarray) -> Iterator[np.ndarray]:
        block = np.asarray(block, np.float32)
        self.seen += block.shape[-1]
        if self.plan.length is not None and self.seen > self.plan.length:
            raise ValueError(f"got {self.seen} samples, more than the planned {self.plan.length}")
        keep = self.plan.chunk + 1
        self.tail = np.concatenate([self.tail, block], axis=-1)[:, -keep:]
        if not self.started:
            self.head = np.concatenate([self.head, block], axis=-1)
            if self.head.shape[-1] <= self.plan.pad_left and (self.plan.length is None
                                                              or self.seen < self.plan.length):
                return
            left = pad_edges(self.head, self.plan.pad_left, 0, self.padding)
            block, self.started = left, True
            self.head = None
        self.buffer = np.concatenate([self.buffer, block], axis=-1)
        yield from self._drain()

    def finish(self) -> Iterator[np.ndarray]:
        if self.plan.length is None:
            if not self.seen:
                raise InputError("cannot separate an empty signal")
            self.plan = self.plan.ended(self.seen)
        if self.seen != self.plan.length:
            raise ValueError(f"got {self.seen} samples, planned {self.plan.length}")
        if not self.started:  # everything fitted in the head
            self.buffer = pad_edges(self.head, self.plan.pad_left, 0, self.padding)
            self.started = True
        right = pad_edges(self.tail, 0, self.plan.pad_right, self.padding)[:, self.tail.shape[-1]:]
        self.buffer = np.concatenate([self.buffer, right], axis=-1)
        yield from self._drain()

    def _drain(self) -> Iterator[np.ndarray]:
        chunk, hop = self.plan.chunk, self.plan.hop
        while self.buffer.shape[-1] >= chunk:
            yield self.buffer[:, :chunk]
            self.buffer = self.buffer[:, hop:]


class StreamingStitcher:
    """Incremental overlap-add: chunks of model output in, finished (stems, channels, n) samples out. A stream's
    length-free plan is replaced (`self.plan`) by its ended one before the chunks that hold right padding."""

    def __init__(self, plan: ChunkPlan, window: np.ndarray, stems: int, channels: int):
        self.plan, self.window = plan, window
        self.acc = np.zeros((stems, channels, plan.chunk), np.float64)
        self.weight = np.zeros(plan.chunk, np.float64)
        self.position = 0  # padded-stream index of acc[..., 0]
        self.chunks_done = 0
        self.complete = False

    def step(self, output: np.ndarray) -> np.ndarray:
        """Add one (stems, channels, chunk) output; return the samples no later chunk can touch (float64)."""
        hop = self.plan.hop
        self.acc += output * self.window
        self.weight += self.window
        self.chunks_done += 1
        if self.plan.length is not None and self.chunks_done == self.plan.num_chunks:
            self.complete = True
            return self._emit(self.plan.chunk)
        done = self._emit(hop)
        self.acc = np.concatenate([self.acc[..., hop:], np.zeros_like(self.acc[..., :hop])], axis=-1)
        self.weight = np.concatenate([self.weight[hop:], np.zeros(hop)])
        return done

    def finish(self) -> np.ndarray:
        """What is left once every chunk is in: nothing if the last chunk was known to be the last, else (a stream
        whose last chunks came before its end was known) the last chunk's samples after its first hop."""
        if self.complete:
            return self.acc[..., :0]
        if self.plan.length is None or self.chunks_done != self.plan.num_chunks:
            raise ValueError(f"{self.chunks_done} chunk(s) stitched of a plan that is not complete")
        self.complete = True
        return self._emit(self.plan.chunk - self.plan.hop)

    def _emit(self, count: int) -> np.ndarray:
        start, stop = self.position, self.position + count
        self.position = stop
        lo = max(self.plan.pad_left - start, 0)
        hi = count if self.plan.length is None else min(self.plan.pad_left + self.plan.length - start, count)
        if hi <= lo:
            return self.acc[..., :0]
        return self.acc[..., lo:hi] / self.weight[lo:hi]


@eqx.filter_jit
def _forward(model: eqx.Module, chunks: jax.Array) -> jax.Array:
    return jax.vmap(model)(chunks)


class BatchedModel:
    """`vmap(model)`, jitted for one (batch_size, channels, chunk) shape; a short last batch is zero-padded.

    `input_std` is the level of the model's training mixtures (`Bundle.input_std`): each chunk is scaled by it
    before the model and the estimates scaled back, so a z-scored input reaches the model at the level it was
    trained at. Pass 1.0 for inputs that are not normalised.
    """

    def __init__(self, model: eqx.Module, batch_size: int, device: jax.Device | None = None,
                 input_std: float = 1.0):
        if not 0 < input_std < float("inf"):
            raise InputError(f"input_std must be positive and finite, got {input_std}")
        self.model = model if device is None else jax.device_put(model, device)
        self.batch_size, self.device, self.input_std = batch_size, device, float(input_std)

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        count = chunks.shape[0]
        if count < self.batch_size:
            pad = np.zeros((self.batch_size - count, *chunks.shape[1:]), chunks.dtype)
            chunks = np.concatenate([chunks, pad])
        if self.input_std != 1.0:
            chunks = (chunks * np.float32(self.input_std)).astype(chunks.dtype)
        inputs = jnp.asarray(chunks) if self.device is None else jax.device_put(chunks, self.device)
        estimates = np.asarray(_forward(self.model, inputs))[:count]
        return estimates if self.input_std == 1.0 else estimates / np.float32(self.input_std)


def _batches(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    pending = []
    for c in chunks:
        pending.append(c)
        if len(pending) == size:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


@dataclass(frozen=True)
class InferenceConfig:
    chunk: int
    overlap: float = 0.5
    hop: int | None = None
    """Overrides `overlap` when set."""
    batch_size: int = 4
    window: WindowName = "hann"
    padding: PaddingMode = "reflect"
    normalize: Normalization = "track"
    shifts: int = 0
    """Average over this many runs with the chunk grid shifted by random offsets below one hop (0: one run)."""
    shift_seed: int = 0

    def __post_init__(self):
        if self.shifts < 0:
            raise InputError(f"shifts={self.shifts} must be >= 0")
        if self.normalize not in ("track", "start", "none"):
            raise InputError(f"normalize={self.normalize!r}: choose track, start or none")

    def shift_offsets(self) -> list[int]:
        """The delays, in samples, of the shifted runs (seeded: the same file separates the same way)."""
        hop = self.hop if self.hop is not None else self.plan(self.chunk).hop
        return [int(o) for o in np.random.default_rng(self.shift_seed).integers(0, max(hop, 1), self.shifts)]

    def plan(self, length: int | None) -> ChunkPlan:
        if self.hop is not None:
            return ChunkPlan(length, self.chunk, self.hop)
        return ChunkPlan.from_overlap(length, self.chunk, self.overlap)


def separate_stream(model_fn: ModelFn, blocks: Iterable[np.ndarray], length: int | None, channels: int,
                    config: InferenceConfig, stats: NormStats | None = None) -> Iterator[np.ndarray]:
    """Separate a signal that arrives in blocks (`length` None: until they end); yields finished
    (stems, channels_out, n) pieces in order. `stats` z-score the input and are undone on the output."""
    if not config.shifts:
        yield from _separate_stream(model_fn, blocks, length, channels, config, stats)
        return
    offsets = config.shift_offsets()
    silence = 0.0 if stats is None else stats.mean  # zero after normalisation
    runs = [_advance(_separate_stream(model_fn, itertools.chain([np.full((channels, o), silence, np.float32)],
                                                                copy), None if length is None else length + o,
                                      channels, config, stats), o)
            for o, copy in zip(offsets, itertools.tee(blocks, len(offsets)), strict=True)]
    yield from _average_streams(runs)


def _advance(pieces: Iterator[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """The pieces without their first `count` samples."""
    for piece in pieces:
        drop = min(count, piece.shape[-1])
        count -= drop
        if piece.shape[-1] > drop:
            yield piece[..., drop:]


def _average_streams(streams: list[Iterator[np.ndarray]]) -> Iterator[np.ndarray]:
    """The mean of streams of pieces of the same total length, emitted as soon as every stream has it. The
    stream furthest behind is advanced next, so the pending samples stay within a batch of chunks."""
    pending: list[list[np.ndarray]] = [[] for _ in streams]
    counts = [0] * len(streams)
    done = [False] * len(streams)
    while True:
        behind = min((i for i in range(len(streams)) if not done[i]), key=lambda i: counts[i], default=None)
        if behind is None:
            return
        piece = next(streams[behind], None)
        if piece is None:
            done[behind] = True
        else:
            pending[behind].append(piece)
            counts[behind] += piece.shape[-1]
        ready = min(counts)
        if ready:
            parts = []
            for i, chunks in enumerate(pending):
                joined = np.concatenate(chunks, axis=-1)
                parts.append(joined[..., :ready].astype(np.float64))
                pending[i] = [joined[..., ready:]]
                counts[i] -= ready
            yield (sum(parts) / len(parts)).astype(np.float32)


def _separate_stream(model_fn: ModelFn, blocks: Iterable[np.ndarray], length: int | None, channels: int,
                     config: InferenceConfig, stats: NormStats | None) -> Iterator[np.ndarray]:
    plan = config.plan(length)
    chunker = Chunker(plan, channels, config.padding)
    window = chunk_window(config.window, plan.chunk)
    stitcher = None

    def chunks() -> Iterator[np.ndarray]:
        for block in blocks:
            if stats is not None:
                block = ((np.asarray(block, np.float64) - stats.mean) / stats.std).astype(np.float32)
            yield from chunker.feed(block)
        yield from chunker.finish()

    for batch in _batches(chunks(), config.batch_size):
        outputs = model_fn(batch.astype(np.float32))
        if stitcher is None:
            stitcher = StreamingStitcher(plan, window, outputs.shape[1], outputs.shape[2])
        stitcher.plan = chunker.plan  # a stream's end is settled before the batch holding its right padding
        for output in outputs:
            yield from _finished(stitcher.step(output), stats)
    stitcher.plan = chunker.plan
    yield from _finished(stitcher.finish(), stats)


def _finished(piece: np.ndarray, stats: NormStats | None) -> Iterator[np.ndarray]:
    if piece.shape[-1]:
        yield piece.astype(np.float32) if stats is None else denormalize(piece, stats)


def separate_array(model_fn: ModelFn, audio: np.ndarray, config: InferenceConfig) -> np.ndarray:
    """Separate an in-memory (channels, T) signal into (stems, channels_out, T)."""
    audio = np.asarray(audio, np.float32)
    stats = None
    if config.normalize == "track":
        _, stats = normalize(audio)
    elif config.normalize == "start":
        _, stats = normalize(audio[:, : config.chunk])
    pieces = list(separate_stream(model_fn, [audio], audio.shape[-1], audio.shape[0], config, stats))
    return np.concatenate(pieces, axis=-1)
