"""The configuration of the tutorial's dual-path SepReformer."""

from dataclasses import dataclass
from typing import Literal

from sepjax.models.checks import ConfigMethods, DType, check_model_config
from sepjax.nn.attention import AttentionImpl
from sepjax.nn.kernels import Kernels


@dataclass(frozen=True)
class DualPathConfig(ConfigMethods):
    """The dual-path SepReformer of the tutorial (seeds/003): conv encoder, dual-path blocks, GLU split, decoders."""

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
    with no stacked residuals (faster train steps on CPU: docs/performance.md), and compile time grows with
    depth. False compiles one block per stack. Under `remat` the rolled scan is kept (faster there)."""
    attention_impl: AttentionImpl = "xla"
    """`jax.nn.dot_product_attention`'s implementation; 'cudnn' (GPU, with dtype bfloat16) is cuDNN's fused kernel."""
    kernels: Kernels = "reference"
    """'cpu_fast': the XLA:CPU kernels of `sepjax.nn.kernels` (same values, faster training on a CPU)."""

    def __post_init__(self):
        head = self.dim // max(self.heads, 1)
        rope = [] if head % 2 == 0 else [f"head size dim/heads={head} must be even for RoPE"]
        check_model_config(self, ("dim", "heads", "ff_dim", "chunk_size", "num_sep_blocks", "num_rec_blocks",
                                  "encoder_kernel", "encoder_stride", "num_stems", "in_channels", "out_channels"),
                           rope)
