"""Run a separator exported by `sepjax export BUNDLE --format stablehlo` without sepjax's model code.

The artifact is a folder: `model.jaxexport` (a serialized `jax.export.Exported`: the model's StableHLO with its
weights baked in, for a symbolic batch of chunks) and `meta.json` (stems, sample rate, chunk length, channels, and
`input_std`: the level of the model's training mixtures, the standard deviation to scale a z-scored input to).
This module needs only JAX and NumPy:

    from sepjax.exported import load_exported
    separator = load_exported("exported/chorales-satb")
    estimates = separator(chunks)        # (batch, channels, chunk) → (batch, stems, channels_out, chunk)

Cut longer audio into `separator.chunk`-sample pieces (with overlap-add, as `sepjax separate` does).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jax import export

MODEL_FILE = "model.jaxexport"
META_FILE = "meta.json"


@dataclass(frozen=True)
class ExportedSeparator:
    exported: export.Exported
    stem_names: tuple[str, ...]
    sample_rate: int
    chunk: int
    in_channels: int
    out_channels: int
    input_std: float = 1.0
    """The level of the model's training mixtures: scale a z-scored input to it, and the estimates back."""

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        chunks = np.asarray(chunks, np.float32)
        if chunks.ndim != 3 or chunks.shape[1:] != (self.in_channels, self.chunk):
            raise ValueError(f"expected chunks of shape (batch, {self.in_channels}, {self.chunk}), got "
                             f"{chunks.shape}")
        return np.asarray(self.exported.call(chunks))


def load_exported(path: str | Path) -> ExportedSeparator:
    path = Path(path)
    meta = json.loads((path / META_FILE).read_text())
    exported = export.deserialize(bytearray((path / MODEL_FILE).read_bytes()))
    return ExportedSeparator(exported, tuple(meta["stem_names"]), int(meta["sample_rate"]), int(meta["chunk"]),
                             int(meta["in_channels"]), int(meta["out_channels"]), float(meta.get("input_std", 1.0)))
