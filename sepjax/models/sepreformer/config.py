"""The configuration of the paper's SepReformer."""

from dataclasses import dataclass
from typing import Literal

from sepjax.models.checks import ConfigMethods, DType, check_model_config
from sepjax.nn.attention import AttentionImpl
from sepjax.nn.kernels import Kernels


@dataclass(frozen=True)
class SepReformerConfig(ConfigMethods):
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
    unroll: bool = False
    """Apply each stage's repeated blocks (an encoder stage's two Global-Local pairs, a decoder stage's three
    rounds) one after another instead of as one `lax.scan`, which traces and compiles them once per stage.
    The values are the same; the scan compiles faster."""
    kernels: Kernels = "reference"
    """'cpu_fast': the XLA:CPU kernels of `sepjax.nn.kernels` (same values, faster training on a CPU): attention
    with its relative-position bias and dropout in head-major layout with a hand-written backward, and
    projections (the waveform decoders' included) whose weight gradient transposes the narrower operand; and
    the stages at the two finest frame rates unrolled (`stages.CPU_FAST_UNROLLED_RATES`)."""
    attention_impl: AttentionImpl = "xla"
    """`jax.nn.dot_product_attention`'s implementation; 'cudnn' (GPU, with dtype bfloat16) is cuDNN's fused kernel."""

    def __post_init__(self):
        odd = [f"{name}={getattr(self, name)} must be odd ('same' padding)"
               for name in ("local_kernel", "down_kernel") if getattr(self, name) % 2 == 0]
        check_model_config(self, ("dim", "num_stages", "heads", "encoder_channels", "encoder_kernel",
                                  "encoder_stride", "local_kernel", "down_kernel", "max_relative_position",
                                  "num_stems", "in_channels", "out_channels"), odd)
