"""`sepjax export`: a bundle as an artifact that runs without sepjax's model code.

`stablehlo` serializes the jitted model through `jax.export` for a symbolic batch of fixed-length chunks:
the weights are constants in the StableHLO, and `sepjax.exported` (JAX and NumPy only) runs it.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import export

from sepjax.exported import META_FILE, MODEL_FILE
from sepjax.files import staged_directory
from sepjax.inference.bundle import load_bundle
from sepjax.inference.pretrained import resolve_bundle

DEFAULT_CHUNK_SECONDS = 4.0


def export_stablehlo(bundle: str | Path, out: str | Path, *, chunk_seconds: float | None = None,
                     overwrite: bool = False) -> Path:
    """Write OUT/model.jaxexport and OUT/meta.json for chunks of the bundle's chunk length (or `chunk_seconds`)."""
    loaded = load_bundle(resolve_bundle(str(bundle)))
    seconds = next(s for s in (chunk_seconds, loaded.chunk_seconds, DEFAULT_CHUNK_SECONDS) if s is not None)
    chunk = int(round(seconds * loaded.sample_rate))
    channels = loaded.config.in_channels
    model = loaded.model

    def separate(chunks):
        return jax.vmap(model)(chunks)

    batch, = export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, channels, chunk), jnp.float32)
    exported = export.export(jax.jit(separate))(spec)
    meta = {"stem_names": list(loaded.stem_names), "sample_rate": loaded.sample_rate, "chunk": chunk,
            "in_channels": channels, "out_channels": loaded.config.out_channels, "family": loaded.config.family}
    with staged_directory(out, overwrite=overwrite) as staging:
        (staging / MODEL_FILE).write_bytes(exported.serialize())
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
    return Path(out)
