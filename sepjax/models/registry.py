"""Named configurations and the one function that turns a config into a model."""

from typing import Any

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray

from sepjax.models.config import DualPathConfig, ModelConfig
from sepjax.models.dual_path import DualPathSepReformer

MODEL_CONFIGS: dict[str, ModelConfig] = {
    # The tutorial's model: 256/8/1024/64, 2 separation + 2 reconstruction blocks, K16 S8, 5 stems.
    "sepreformer-dp": DualPathConfig(),
    # Small enough to train in tests and on a laptop CPU.
    "sepreformer-dp-tiny": DualPathConfig(
        dim=32, heads=4, ff_dim=64, chunk_size=16, num_sep_blocks=1, num_rec_blocks=1, num_stems=4
    ),
}

MODEL_CLASSES: dict[str, type[eqx.Module]] = {"dual_path": DualPathSepReformer}


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered config `name`, with fields replaced by `overrides`."""
    if name not in MODEL_CONFIGS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[name].replace(**overrides) if overrides else MODEL_CONFIGS[name]


def build_model(config: ModelConfig, *, key: PRNGKeyArray) -> eqx.Module:
    """Instantiate the model family that `config.family` names."""
    return MODEL_CLASSES[config.family](config, key=key)


def count_params(model: eqx.Module) -> int:
    """Number of trainable floating-point parameters."""
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
