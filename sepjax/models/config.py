"""Model configurations: one frozen dataclass per family, the single source of truth for its shape."""

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

DType = Literal["float32", "bfloat16"]


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
    attention_impl: Literal["auto", "xla", "cudnn"] = "auto"

    def __post_init__(self):
        problems = []
        if self.dim % self.heads:
            problems.append(f"dim={self.dim} must be divisible by heads={self.heads}")
        if (self.dim // max(self.heads, 1)) % 2:
            problems.append(f"head size dim/heads={self.dim // self.heads} must be even for RoPE")
        for name in ("dim", "heads", "ff_dim", "chunk_size", "num_sep_blocks", "num_rec_blocks",
                     "encoder_kernel", "encoder_stride", "num_stems", "in_channels", "out_channels"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout} must be in [0, 1)")
        if self.dtype not in ("float32", "bfloat16"):
            problems.append(f"dtype={self.dtype!r} must be 'float32' or 'bfloat16'")
        if problems:
            raise ValueError("invalid DualPathConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "DualPathConfig":
        return dataclasses.replace(self, **changes)


ModelConfig = DualPathConfig

CONFIG_CLASSES: dict[str, type] = {"dual_path": DualPathConfig}


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from `to_dict()` output, rejecting unknown keys by name."""
    family = data.get("family", "dual_path")
    if family not in CONFIG_CLASSES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[family]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
    return cls(**data)
