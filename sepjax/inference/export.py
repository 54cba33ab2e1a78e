"""`sepjax export`: a bundle as an artifact that runs without sepjax's model code.

`stablehlo` serializes the jitted model through `jax.export` for a symbolic batch of fixed-length chunks:
the weights are constants in the StableHLO, and `sepjax.exported` (JAX and NumPy only) runs it.

`onnx` converts the model through jax2onnx for a fixed batch of fixed-length chunks (jax2onnx cannot yet lower
the padding of a symbolic batch), traced without checkpoint regions (`sepjax.nn.remat.plain_forward`), and
checks the result in onnxruntime against JAX on random chunks before anything is written. Both come from
`requirements-onnx.txt`, which `make` installs.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from sepjax.errors import OutputExistsError, SetupError, UserError
from sepjax.exported import META_FILE, MODEL_FILE
from sepjax.files import staged_directory
from sepjax.inference.bundle import Bundle, load_bundle
from sepjax.inference.pretrained import resolve_bundle
from sepjax.nn.remat import plain_forward

DEFAULT_CHUNK_SECONDS = 4.0
ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4
"""Largest |onnxruntime − JAX| accepted, relative to the largest |JAX output|: two float32 evaluations of the same
graph differ by rounding (≈1e-7 relative per operation, a few hundred operations deep), far below this."""


class ExportMismatch(UserError):
    """The exported graph's outputs are not JAX's."""


def _chunking(loaded: Bundle, chunk_seconds: float | None) -> int:
    seconds = next(s for s in (chunk_seconds, loaded.chunk_seconds, DEFAULT_CHUNK_SECONDS) if s is not None)
    return int(round(seconds * loaded.sample_rate))


def _meta(loaded: Bundle, chunk: int, **extra) -> dict:
    return {"stem_names": list(loaded.stem_names), "sample_rate": loaded.sample_rate, "chunk": chunk,
            "in_channels": loaded.config.in_channels, "out_channels": loaded.config.out_channels,
            "family": loaded.config.family, "input_std": loaded.input_std, **extra}


def export_stablehlo(bundle: str | Path, out: str | Path, *, chunk_seconds: float | None = None,
                     overwrite: bool = False) -> Path:
    """Write OUT/model.jaxexport and OUT/meta.json for chunks of the bundle's chunk length (or `chunk_seconds`)."""
    loaded = load_bundle(resolve_bundle(str(bundle)))
    chunk = _chunking(loaded, chunk_seconds)
    model = loaded.model

    def separate(chunks):
        return jax.vmap(model)(chunks)

    batch, = export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((batch, loaded.config.in_channels, chunk), jnp.float32)
    exported = export.export(jax.jit(separate))(spec)
    with staged_directory(out, overwrite=overwrite) as staging:
        (staging / MODEL_FILE).write_bytes(exported.serialize())
        (staging / META_FILE).write_text(json.dumps(_meta(loaded, chunk), indent=2))
    return Path(out)


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    max_error: float
    """Largest |onnxruntime − JAX| on the check's random chunks, relative to the largest |JAX output|."""


def export_onnx(bundle: str | Path, out: str | Path, *, chunk_seconds: float | None = None, batch_size: int = 1,
                overwrite: bool = False, seed: int = 0) -> OnnxExport:
    """Write OUT/model.onnx and OUT/meta.json for batches of `batch_size` chunks of the bundle's chunk length (or
    `chunk_seconds`), after checking onnxruntime's outputs against JAX's to `ONNX_TOLERANCE`."""
    try:
        import onnxruntime
        from jax2onnx import to_onnx
    except ImportError as err:
        raise SetupError(f"--format onnx needs jax2onnx and onnxruntime ({err.name} is missing): "
                         f"pip install --no-deps -r requirements-onnx.txt") from err
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: an ONNX graph needs at least one chunk per call")
    if Path(out).exists() and not overwrite:  # before the conversion, which takes a while
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    loaded = load_bundle(resolve_bundle(str(bundle)))
    chunk = _chunking(loaded, chunk_seconds)
    model = loaded.model
    shape = (batch_size, loaded.config.in_channels, chunk)

    def separate(chunks):
        return jax.vmap(model)(chunks)

    with plain_forward():
        proto = to_onnx(separate, [jax.ShapeDtypeStruct(shape, jnp.float32)], model_name="sepjax_separator",
                        input_names=["chunks"], output_names=["estimates"])
    serialized = proto.SerializeToString()
    session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
    chunks = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = session.run(None, {"chunks": chunks})[0]
    expected = np.asarray(jax.jit(separate)(chunks))
    if got.shape != expected.shape:
        raise ExportMismatch(f"the ONNX graph returns {got.shape}, JAX {expected.shape}; nothing was written")
    error = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
    if not error <= ONNX_TOLERANCE:
        raise ExportMismatch(f"onnxruntime differs from JAX by {error:.2e} of the output's scale (more than "
                             f"{ONNX_TOLERANCE:g}); nothing was written")
    with staged_directory(out, overwrite=overwrite) as staging:
        (staging / ONNX_FILE).write_bytes(serialized)
        (staging / META_FILE).write_text(json.dumps(_meta(loaded, chunk, batch_size=batch_size,
                                                          input="chunks", output="estimates"), indent=2))
    return OnnxExport(Path(out), error)
