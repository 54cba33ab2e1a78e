"""The paper's SepReformer: config, blocks, stages, model."""

from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.models.sepreformer.model import SepReformer

__all__ = ["SepReformer", "SepReformerConfig"]
