"""Official SepReformer checkpoints ⇄ sepjax bundles (`sepjax convert`).

    sepjax convert sepreformer-official epoch.0180.pth --out bundles/sepreformer-b-wsj0
    sepjax convert bundles/my-finetuned --to sepreformer-official --out finetuned.safetensors   # + finetuned.yaml

The official model returns (frames − 1)·stride + kernel samples, which can be a few samples short of the
input; sepjax zero-pads its output to exactly the input length. The two agree on the common prefix.
"""

from collections.abc import Mapping
from pathlib import Path

import yaml

from sepjax.errors import OutputExistsError
from sepjax.files import write_text_atomic
from sepjax.inference.bundle import load_bundle, save_bundle
from sepjax.inference.pretrained import resolve_bundle
from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.models.sepreformer.model import SepReformer
from sepjax.models.sepreformer.official import (
    ConversionError,
    config_from_official_yaml,
    from_official,
    official_config,
    official_model_section,
    to_official,
)
from sepjax.state_dicts import read_state_dict, write_state_dict

OFFICIAL = "sepreformer-official"
OFFICIAL_SAMPLE_RATE = 8000


def read_official_yaml(path: str | Path) -> dict:
    """Config fields from an official `configs.yaml` (its `model:` section, wherever it is nested)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConversionError(f"{path}: unreadable official config ({err})") from err
    section = _find_model_section(document)
    if section is None:
        raise ConversionError(f"{path}: no `model:` section with `module_audio_enc` (not an official configs.yaml)")
    try:
        return config_from_official_yaml(section)
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from err


def _find_model_section(node) -> Mapping | None:
    if isinstance(node, Mapping):
        model = node.get("model")
        if isinstance(model, Mapping) and "module_audio_enc" in model:
            return model
        for value in node.values():
            found = _find_model_section(value)
            if found is not None:
                return found
    return None


def official_model(checkpoint: str | Path, *, config_yaml: str | Path | None = None, **overrides
                   ) -> SepReformer:
    """The sepjax model of an official checkpoint (`.pth`, `.safetensors` or `.npz`)."""
    tensors = read_state_dict(checkpoint)
    fields = read_official_yaml(config_yaml) if config_yaml is not None else {}
    fields.update(overrides)
    try:
        config = official_config(tensors, **fields)
        return from_official(tensors, config)
    except ConversionError as err:
        raise ConversionError(f"{checkpoint}: {err}") from err


def convert_official(checkpoint: str | Path, out: str | Path, *, config_yaml: str | Path | None = None,
                     stem_names: tuple[str, ...] | None = None, sample_rate: int = OFFICIAL_SAMPLE_RATE,
                     input_std: float | None = None, overwrite: bool = False) -> tuple[Path, SepReformerConfig]:
    """Write the bundle of an official checkpoint; nothing is written unless every tensor converts.

    Stems are named spk1, spk2, … unless `stem_names` are given; the official models run at 8 kHz. `input_std` is
    the level of the mixtures the checkpoint trained on (the official code reads them as stored, unnormalised);
    inference scales each normalised input to it, and to 1.0 where it is not given."""
    if input_std is not None and not 0 < input_std < float("inf"):
        raise ConversionError(f"input_std must be positive and finite, got {input_std}")
    model = official_model(checkpoint, config_yaml=config_yaml)
    stems = model.config.num_stems
    stem_names = tuple(f"spk{i + 1}" for i in range(stems)) if stem_names is None else tuple(stem_names)
    if len(stem_names) != stems:
        raise ConversionError(f"{checkpoint}: {len(stem_names)} stem names for a model with {stems} speakers")
    return save_bundle(out, model, stem_names, sample_rate, input_std=input_std, overwrite=overwrite), model.config


def official_yaml_path(state_dict_file: str | Path) -> Path:
    """Where `export_official` writes the official `model:` section: beside the file, as NAME.yaml."""
    return Path(state_dict_file).with_suffix(".yaml")


def export_official(bundle: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a sepjax paper-model bundle (a path or a shipped name) as an official state_dict file, and beside it
    (`official_yaml_path`) the `model:` section of an official configs.yaml that builds the network those
    tensors fit, stride and dropout included, which the weights alone do not record."""
    loaded = load_bundle(resolve_bundle(str(bundle)))
    if not isinstance(loaded.model, SepReformer):
        raise ConversionError(f"{bundle}: a {loaded.config.family} model has no official SepReformer layout; "
                              "only the paper's SepReformer converts")
    section = official_model_section(loaded.config)
    config_file = official_yaml_path(out)
    if config_file.exists() and not overwrite:
        raise OutputExistsError(f"{config_file} exists; pass --overwrite to replace it")
    path = write_state_dict(out, to_official(loaded.model), overwrite=overwrite)
    write_text_atomic(config_file, yaml.safe_dump({"model": section}, sort_keys=False))
    return path
