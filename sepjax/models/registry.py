"""Named configurations and the one function that turns a config into a model."""

from typing import Any

import equinox as eqx
from jaxtyping import PRNGKeyArray

from sepjax.models.base import count_params
from sepjax.models.config import DualPathConfig, ModelConfig, SepReformerConfig
from sepjax.models.dual_path import DualPathSepReformer
from sepjax.models.sepreformer import SepReformer

MODEL_CONFIGS: dict[str, ModelConfig] = {
    # The tutorial's dual-path SepReformer: 256/8/1024/64, 2 separation + 2 reconstruction blocks, K16 S8, 5 stems.
    "dual-path-sepreformer": DualPathConfig(),
    # Small enough to train in tests and on a laptop CPU.
    "dual-path-sepreformer-tiny": DualPathConfig(
        dim=32, heads=4, ff_dim=64, chunk_size=16, num_sep_blocks=1, num_rec_blocks=1, num_stems=4
    ),
    # The paper's SepReformer at 8 kHz, two speakers: T (3.7M), B (14.2M), L (55.2M, shared split).
    "sepreformer-t": SepReformerConfig(dim=64),
    "sepreformer-b": SepReformerConfig(dim=128),
    "sepreformer-l": SepReformerConfig(dim=256, dropout=0.1),
    # Same blocks, two stages and F=16: trains in tests and on a laptop CPU.
    "sepreformer-tiny": SepReformerConfig(dim=16, num_stages=2, heads=2, encoder_channels=32, local_kernel=15,
                                          max_relative_position=64, dropout=0.0),
}

MODEL_CLASSES: dict[str, type[eqx.Module]] = {"dual_path": DualPathSepReformer, "sepreformer": SepReformer}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered config `name`, with fields replaced by `overrides`."""
    if name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[name].replace(**overrides) if overrides else MODEL_CONFIGS[name]


def build_model(config: ModelConfig, *, key: PRNGKeyArray) -> eqx.Module:
    """Instantiate the model family that `config.family` names."""
    return MODEL_CLASSES[config.family](config, key=key)


__all__ = ["MODEL_CLASSES", "MODEL_CONFIGS", "build_model", "count_params", "get_config"]
