"""Chunk length and batch size under a memory budget, from XLA's own account of the compiled model.

A separator's working memory grows with the chunk (the dual-path model's inter-chunk attention, squared) and
with the batch. Rather than guess, `choose_chunking` compiles the batched model for candidate shapes and reads
`memory_analysis()` (temporaries, arguments and outputs): the longest chunk up to the preferred one (halving
down to `MIN_CHUNK_SECONDS`), then the largest batch, that fits the budget. The default budget is a share of
the memory free now: on a GPU its allocator's free bytes, on the CPU the kernel's MemAvailable.
"""

import os
import re
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp

from sepjax.errors import InputError

DEFAULT_SHARE = 0.5
"""Of the free memory, when no --max-memory is given: room for the runtime, the audio buffers and other work."""
MIN_CHUNK_SECONDS = 0.25
BATCH_SIZES = (8, 4, 2, 1)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'4GB', '512 MiB', '1.5gb' or a number of bytes → bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise InputError(f"--max-memory {text!r}: expected a size such as 4GB, 512MB or 2GiB")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise InputError(f"--max-memory {text!r} must be positive")
    return size


def free_memory(device: jax.Device | None = None) -> int:
    """Bytes free now on `device` (JAX's default if None)."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def compiled_bytes(model: eqx.Module, batch: int, channels: int, chunk: int) -> int:
    """XLA's temporaries + arguments + outputs of `vmap(model)` over a (batch, channels, chunk) input."""
    params, static = eqx.partition(model, eqx.is_array)

    def forward(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    compiled = jax.jit(forward).lower(params, jax.ShapeDtypeStruct((batch, channels, chunk), jnp.float32)).compile()
    stats = compiled.memory_analysis()
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


@dataclass(frozen=True)
class Chunking:
    chunk: int
    batch_size: int
    bytes: int
    """What XLA says the model call needs at this shape."""


def choose_chunking(model: eqx.Module, channels: int, sample_rate: int, budget: int, preferred_chunk: int, *,
                    chunks: tuple[int, ...] | None = None, batch_sizes: tuple[int, ...] = BATCH_SIZES) -> Chunking:
    """The longest chunk (then the largest batch) whose compiled model fits `budget` bytes.

    `chunks` fixes the candidate chunk lengths (default: `preferred_chunk`, halved down to MIN_CHUNK_SECONDS);
    a single batch size fixes the batch. An input whose smallest candidate does not fit is an error that says
    how much memory it needs."""
    if chunks is None:
        floor = min(int(MIN_CHUNK_SECONDS * sample_rate), preferred_chunk)
        chunks, c = [], preferred_chunk
        while c >= floor:
            chunks.append(c)
            c //= 2
    smallest = None
    for chunk in chunks:
        for batch in sorted(batch_sizes, reverse=True):
            need = compiled_bytes(model, batch, channels, chunk)
            if need <= budget:
                return Chunking(chunk, batch, need)
            smallest = (chunk, batch, need)
    chunk, batch, need = smallest
    raise InputError(f"the model needs {need / 1e6:.0f} MB for even {batch} chunk(s) of {chunk / sample_rate:.2f} s, "
                     f"over the memory budget of {budget / 1e6:.0f} MB; raise --max-memory or pass a shorter "
                     f"--chunk-seconds")
