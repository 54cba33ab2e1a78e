"""Model configurations: one frozen dataclass per family (in its folder), the single source of truth for its
shape, and the one function that reads a saved config back."""

import dataclasses
from typing import Any

from sepjax.errors import InputError
from sepjax.models.dual_path.config import DualPathConfig
from sepjax.models.sepreformer.config import SepReformerConfig

ModelConfig = DualPathConfig | SepReformerConfig

CONFIG_CLASSES: dict[str, type] = {"dual_path": DualPathConfig, "sepreformer": SepReformerConfig}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from `to_dict()` output, rejecting unknown keys by name."""
    family = data.get("family", "dual_path")
    if family not in CONFIG_CLASSES:
        raise InputError(f"unknown model family {family!r}; known: {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[family]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown {cls.__name__} fields: {unknown}")
    return cls(**data)
