"""A trained model as one directory: bundle.json (format version, config, stem names, sample rate) + weights.eqx.

Format 3 stores the paper model's BatchNorm statistics as PyTorch does (running mean and variance used as
they are, and a step count). Format 2 stored Equinox's (a counter, and statistics that inference divided by
1 − 0.9^counter); it loads with the statistics divided once, which normalises exactly as before
(`models.sepreformer.legacy`). Format 1 (no `format_version`) is format 2 with an older config: its
`attention_impl` may be "auto" or "head_major", which chose kernels by backend, and it has no `kernels`
field. It loads as the reference kernels with XLA attention, which compute the same function.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax

from sepjax import __version__
from sepjax.errors import InputError
from sepjax.files import staged_directory
from sepjax.models import ModelConfig, build_model, config_from_dict
from sepjax.models.sepreformer.legacy import load_equinox_batch_norm_weights

META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.eqx"
FORMAT_VERSION = 3
EQUINOX_BATCH_NORM_FORMATS = (1, 2)


class BundleError(InputError):
    """A bundle directory that is missing files or does not match its config; the message names it."""


@dataclass(frozen=True)
class Bundle:
    model: eqx.Module
    config: ModelConfig
    stem_names: tuple[str, ...]
    sample_rate: int
    version: str
    chunk_seconds: float | None = None  # the chunk length the model was validated with, if recorded
    input_std: float = 1.0
    """The standard deviation of the mixtures the model trained on: normalised inputs are scaled to it
    (`BatchedModel`), since a model's estimates depend on its input's level. 1.0 where not recorded."""


def save_bundle(path: str | Path, model: eqx.Module, stem_names: tuple[str, ...] | list[str], sample_rate: int,
                *, chunk_seconds: float | None = None, input_std: float | None = None,
                overwrite: bool = False) -> Path:
    """Write the bundle atomically (a temp directory renamed into place).

    `chunk_seconds`, the inference chunk length training validated with, becomes `sepjax separate`'s default.
    `input_std`, the level of the training mixtures (`sepjax.data.pipeline.input_level`), is the level that
    inference scales normalised inputs to.
    """
    path = Path(path)
    config = model.config
    if len(stem_names) != config.num_stems:
        raise BundleError(f"{len(stem_names)} stem names for a model with {config.num_stems} stems")
    if chunk_seconds is not None and not chunk_seconds > 0:
        raise BundleError(f"chunk_seconds must be positive, got {chunk_seconds}")
    if input_std is not None and not 0 < input_std < float("inf"):
        raise BundleError(f"input_std must be positive and finite, got {input_std}")
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), "stem_names": list(stem_names),
            "sample_rate": int(sample_rate),
            "sepjax_version": __version__}
    if chunk_seconds is not None:
        meta["chunk_seconds"] = float(chunk_seconds)
    if input_std is not None:
        meta["input_std"] = float(input_std)
    with staged_directory(path, overwrite=overwrite) as staging:
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        eqx.tree_serialise_leaves(staging / WEIGHTS_FILE, model)
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Rebuild the model from the config and load the weights, checking that the two agree."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    for name in (META_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise BundleError(f"{path}: bundle is missing {name}")
    try:
        meta = json.loads((path / META_FILE).read_text())
        version = int(meta.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise BundleError(f"{path / META_FILE}: bundle format {version} is newer than this sepjax "
                              f"{__version__} reads (format {FORMAT_VERSION}); upgrade sepjax")
        config = config_from_dict(meta["config"] if version > 1 else _format_1_config(meta["config"]))
        stems, rate = tuple(meta["stem_names"]), int(meta["sample_rate"])
        chunk_seconds = None if meta.get("chunk_seconds") is None else float(meta["chunk_seconds"])
        input_std = float(meta.get("input_std", 1.0))
        if not 0 < input_std < float("inf"):
            raise BundleError(f"{path / META_FILE}: input_std must be positive and finite, got {input_std}")
    except BundleError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{path / META_FILE}: unreadable bundle metadata ({err})") from err
    if len(stems) != config.num_stems:
        raise BundleError(f"{path}: {len(stems)} stem names but the config has {config.num_stems} stems")
    try:
        if version in EQUINOX_BATCH_NORM_FORMATS and getattr(config, "norm", None) == "batch":
            model = load_equinox_batch_norm_weights(path / WEIGHTS_FILE, config)
        else:
            model = eqx.tree_deserialise_leaves(path / WEIGHTS_FILE, build_model(config, key=jax.random.PRNGKey(0)))
    except Exception as err:
        raise BundleError(f"{path / WEIGHTS_FILE}: weights do not match the config in {META_FILE} "
                          f"(bundle format {version}, this sepjax reads format {FORMAT_VERSION}: {err})") from err
    return Bundle(model, config, stems, rate, meta.get("sepjax_version", "unknown"), chunk_seconds, input_std)


def _format_1_config(config: dict) -> dict:
    """A format-1 config as later formats have it: backend-chosen attention becomes XLA attention with the
    reference kernels."""
    config = dict(config)
    if config.get("attention_impl") in ("auto", "head_major"):
        config["attention_impl"] = "xla"
    return config
