"""The tutorial's dual-path SepReformer: config, blocks, model."""

from sepjax.models.dual_path.config import DualPathConfig
from sepjax.models.dual_path.model import DualPathSepReformer

__all__ = ["DualPathConfig", "DualPathSepReformer"]
