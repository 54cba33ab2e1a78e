"""Model families and the registry: name → frozen config → model."""

from sepjax.models.base import Separator, count_params, parameters, trainable
from sepjax.models.config import DualPathConfig, ModelConfig, SepReformerConfig, config_from_dict
from sepjax.models.dual_path import DualPathSepReformer
from sepjax.models.registry import MODEL_CONFIGS, build_model, get_config
from sepjax.models.sepreformer import SepReformer

__all__ = [
    "MODEL_CONFIGS", "DualPathConfig", "DualPathSepReformer", "ModelConfig", "SepReformer", "SepReformerConfig",
    "Separator", "build_model", "config_from_dict", "count_params", "get_config", "parameters", "trainable",
]
