"""Model families and the registry: name → frozen config → model."""

from sepjax.models.config import DualPathConfig, ModelConfig, config_from_dict
from sepjax.models.dual_path import DualPathSepReformer
from sepjax.models.registry import MODEL_CONFIGS, build_model, count_params, get_config

__all__ = [
    "MODEL_CONFIGS", "DualPathConfig", "DualPathSepReformer", "ModelConfig", "build_model",
    "config_from_dict", "count_params", "get_config",
]
