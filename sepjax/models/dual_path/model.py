"""The tutorial's dual-path SepReformer, block by block.

    mixture (C_in, T)
      → ConvEncoder (K16 S8, GELU)            (L, dim)
      → sep DualPathBlocks × num_sep_blocks    (L, dim)        stacked, one lax.scan
      → GLUSplit                               (N, L, dim)
      → rec DualPathBlocks × num_rec_blocks    (N, L, dim)     shared weights, stems as a leading axis
      → ConvDecoder, vmapped over stems        (N, C_out, T')
      → trim / pad to T                        (N, C_out, T)
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.framing import fit_length
from sepjax.models.base import Separator
from sepjax.models.dual_path.blocks import DualPathBlock, GLUSplit
from sepjax.models.dual_path.config import DualPathConfig
from sepjax.nn.conv import ConvDecoder, ConvEncoder
from sepjax.nn.keys import split_keys
from sepjax.nn.stack import cast_floating, scan_blocks, stacked


class DualPathSepReformer(Separator):
    """One example in, `num_stems` waveforms out; callers `jax.vmap` over the batch. No normalisation statistics."""

    encoder: ConvEncoder
    sep_blocks: DualPathBlock
    split: GLUSplit
    rec_blocks: DualPathBlock
    decoder: ConvDecoder
    config: DualPathConfig = eqx.field(static=True)
    stats: None = None

    def __init__(self, config: DualPathConfig, *, key: PRNGKeyArray):
        k_enc, k_sep, k_split, k_rec, k_dec = jax.random.split(key, 5)
        c = config

        def block(k):
            return DualPathBlock(c.dim, c.heads, c.ff_dim, c.chunk_size, dropout=c.dropout,
                                 layer_scale_init=c.layer_scale_init, attention_impl=c.attention_impl,
                                 kernels=c.kernels, key=k)

        self.encoder = ConvEncoder(c.in_channels, c.dim, c.encoder_kernel, c.encoder_stride, key=k_enc)
        self.sep_blocks = stacked(block, c.num_sep_blocks, key=k_sep)
        self.split = GLUSplit(c.dim, c.num_stems, key=k_split)
        self.rec_blocks = stacked(block, c.num_rec_blocks, key=k_rec)
        self.decoder = ConvDecoder(c.dim, c.out_channels, c.encoder_kernel, c.encoder_stride, key=k_dec)
        self.config = config

    def forward(self, mixture: Float[Array, "in_channels time"], *, inference: bool,
                key: PRNGKeyArray | None = None) -> tuple[Float[Array, "stems out_channels time"], None, None]:
        c = self.config
        if mixture.shape[0] != c.in_channels:
            raise ValueError(f"expected {c.in_channels} input channel(s), got shape {mixture.shape}")
        length = mixture.shape[-1]
        if length < c.encoder_kernel:
            raise ValueError(
                f"input of {length} samples is shorter than the encoder kernel {c.encoder_kernel}"
            )
        compute = jnp.dtype(c.dtype)
        model = cast_floating(self, compute)
        k_sep, k_rec = split_keys(key)

        def run(blk, x, k):
            return blk(x, inference=inference, key=k)

        unroll = c.unroll_blocks and not c.remat
        h = model.encoder(mixture.astype(compute))
        h = scan_blocks(model.sep_blocks, h, run, key=k_sep, remat=c.remat, unroll=unroll)
        streams = scan_blocks(model.rec_blocks, model.split(h), run, key=k_rec, remat=c.remat, unroll=unroll)
        waves = jax.vmap(model.decoder)(streams)
        return fit_length(waves, length).astype(mixture.dtype), None, None
