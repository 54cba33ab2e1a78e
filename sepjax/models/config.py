"""Model configurations: one frozen dataclass per family, the single source of truth for its shape."""

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from sepjax.errors import InputError

DType = Literal["float32", "bfloat16"]


def check_model_config(config: Any, positive: tuple[str, ...], problems: list[str]) -> None:
    """What every family's config must satisfy, plus the family's own `problems`: heads divide dim, sizes are
    positive, dropout is a probability below 1, and each `Literal` field holds one of its choices."""
    problems = list(problems)
    if config.dim % max(config.heads, 1):
        problems.append(f"dim={config.dim} must be divisible by heads={config.heads}")
    problems += [f"{name}={getattr(config, name)} must be >= 1" for name in positive if getattr(config, name) < 1]
    if not 0.0 <= config.dropout < 1.0:
        problems.append(f"dropout={config.dropout} must be in [0, 1)")
    for f in dataclasses.fields(config):
        choices = typing.get_args(f.type) if typing.get_origin(f.type) is Literal else ()
        if choices and getattr(config, f.name) not in choices:
            problems.append(f"{f.name}={getattr(config, f.name)!r} must be one of {list(choices)}")
    if problems:
        raise InputError(f"invalid {type(config).__name__}: " + "; ".join(problems))


@dataclass(frozen=True)
class DualPathConfig:
    """The design-card SepReformer (seeds/003): conv encoder, dual-path blocks, GLU split, decoders."""

    family: Literal["dual_path"] = "dual_path"
    dim: int = 256
    heads: int = 8
    ff_dim: int = 1024
    chunk_size: int = 64
    num_sep_blocks: int = 2
    num_rec_blocks: int = 2
    encoder_kernel: int = 16
    encoder_stride: int = 8
    num_stems: int = 5
    in_channels: int = 1
    out_channels: int = 1
    dropout: float = 0.0
    layer_scale_init: float = 1e-4
    dtype: DType = "float32"
    """Compute dtype; parameters stay float32."""
    remat: bool = False
    """Rematerialise each dual-path block in the backward pass (less memory, more compute)."""
    unroll_blocks: bool = True
    """Without `remat`, lower each block stack's scan unrolled: traced once, but XLA gets straight-line code
    with no stacked residuals (faster train steps on CPU: README, Performance), and compile time grows with
    depth. False compiles one block per stack. Under `remat` the rolled scan is kept (faster there)."""
    attention_impl: Literal["auto", "xla", "cudnn", "head_major"] = "auto"
    """`auto`: sepjax's head-major kernel on CPU, `jax.nn.dot_product_attention` elsewhere (cuDNN in bf16/fp16)."""

    def __post_init__(self):
        rope = [] if (self.dim // max(self.heads, 1)) % 2 == 0 else [
            f"head size dim/heads={self.dim // max(self.heads, 1)} must be even for RoPE"]
        check_model_config(self, ("dim", "heads", "ff_dim", "chunk_size", "num_sep_blocks", "num_rec_blocks",
                                  "encoder_kernel", "encoder_stride", "num_stems", "in_channels", "out_channels"),
                           rope)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "DualPathConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SepReformerConfig:
    """The paper's asymmetric SepReformer (NeurIPS 2024): separation encoder, speaker split, reconstruction decoder.

    Defaults are SepReformer-B for 8 kHz two-speaker speech; the registry holds T, B, L and tiny.
    """

    family: Literal["sepreformer"] = "sepreformer"
    dim: int = 128
    """F: the feature dimension of every block."""
    num_stages: int = 4
    """R: encoder stages (each halves the frame rate) and decoder stages."""
    heads: int = 8
    """Heads of the global (EGA) and cross-speaker attention."""
    encoder_channels: int = 256
    encoder_kernel: int = 16
    encoder_stride: int = 4
    local_kernel: int = 65
    """Depthwise kernel of the convolutional local attention (CLA)."""
    down_kernel: int = 5
    """Depthwise kernel of the stride-2 downsampling between encoder stages."""
    max_relative_position: int = 2000
    """Relative offsets are clamped to ±this before the learned embedding lookup."""
    num_stems: int = 2
    in_channels: int = 1
    out_channels: int = 1
    dropout: float = 0.05
    layer_scale_init: float = 1e-5
    norm: Literal["batch", "group"] = "batch"
    """'batch': BatchNorm with running statistics in an eqx.nn.State (as the paper); 'group': stateless GroupNorm(1)."""
    shared_split: bool = True
    """One speaker-split layer for the bottleneck and every skip, or one per stage."""
    aux_heads: bool = True
    """Build the R auxiliary output heads for the multi-loss (used in training only)."""
    activation: Literal["gelu", "snake"] = "gelu"
    """The feed-forward activation in CLA and the downsampling layers; 'snake' is the SepACap variant."""
    dtype: DType = "float32"
    """Compute dtype; parameters and normalisation statistics stay float32."""
    remat: bool = False
    """Rematerialise each block in the backward pass (less memory, more compute)."""
    attention_impl: Literal["auto", "xla", "cudnn"] = "auto"

    def __post_init__(self):
        odd = [f"{name}={getattr(self, name)} must be odd ('same' padding)"
               for name in ("local_kernel", "down_kernel") if getattr(self, name) % 2 == 0]
        check_model_config(self, ("dim", "num_stages", "heads", "encoder_channels", "encoder_kernel",
                                  "encoder_stride", "local_kernel", "down_kernel", "max_relative_position",
                                  "num_stems", "in_channels", "out_channels"), odd)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "SepReformerConfig":
        return dataclasses.replace(self, **changes)


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
