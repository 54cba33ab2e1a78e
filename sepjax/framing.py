"""Overlapping frames and overlap-add along the last axis, by reshape and slicing (never gather).

Split the signal into blocks of `hop` samples; frame i is the first `frame_length` samples of
blocks i, i+1, …, i+A−1 with A = ⌈frame_length / hop⌉. Overlap-add runs the same layout backwards
with shifted pads, so neither direction needs a gather or a scatter.
"""

import math

import jax.numpy as jnp
from jaxtyping import Array, Shaped


def count_frames(length: int, frame_length: int, hop: int) -> int:
    """Full frames in `length` samples: ⌊(length − frame_length)/hop⌋ + 1, or 0."""
    return max((length - frame_length) // hop + 1, 0)


def frame(
    x: Shaped[Array, "*lead time"], frame_length: int, hop: int
) -> Shaped[Array, "*lead frames frame_length"]:
    """All full frames of the last axis; a ragged tail shorter than a frame is dropped."""
    *lead, length = x.shape
    frames = count_frames(length, frame_length, hop)
    if frames == 0:
        raise ValueError(f"signal of {length} samples is shorter than one frame of {frame_length}")
    spans = math.ceil(frame_length / hop)
    needed = (frames + spans - 1) * hop
    if needed > length:
        x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, needed - length)])
    blocks = x[..., :needed].reshape(*lead, frames + spans - 1, hop)
    joined = jnp.concatenate([blocks[..., a : a + frames, :] for a in range(spans)], axis=-1)
    return joined[..., :frame_length]


def overlap_add(frames: Shaped[Array, "*lead frames frame_length"], hop: int) -> Shaped[Array, "*lead time"]:
    """Sum frames placed `hop` apart: (frames − 1)·hop + frame_length samples."""
    *lead, count, frame_length = frames.shape
    spans = math.ceil(frame_length / hop)
    width = spans * hop
    if width > frame_length:
        frames = jnp.pad(frames, [(0, 0)] * (len(lead) + 1) + [(0, width - frame_length)])
    parts = frames.reshape(*lead, count, spans, hop)
    no_pad = [(0, 0)] * len(lead)
    total = sum(
        jnp.pad(parts[..., a, :], no_pad + [(a, spans - 1 - a), (0, 0)]) for a in range(spans)
    )
    out = total.reshape(*lead, (count + spans - 1) * hop)
    return out[..., : (count - 1) * hop + frame_length]


def fit_length(x: Shaped[Array, "*lead time"], length: int) -> Shaped[Array, "*lead length"]:
    """Trim or zero-pad the last axis to `length`."""
    have = x.shape[-1]
    if have >= length:
        return x[..., :length]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - have)])
