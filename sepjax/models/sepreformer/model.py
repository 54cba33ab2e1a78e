"""The paper's SepReformer ("Separate and Reconstruct", NeurIPS 2024), block by block.

    mixture (C_in, T)
      → Conv1d(C_in→256, K16 S4, no bias), GELU              encoded (L, 256)
      → GroupNorm(1), Linear(256→F)                          (L, F), zero-padded to a multiple of 2^R
      → R encoder stages [G, L, G, L, skip, ↓2]              (L/2^R, F)   + skips (L/2^r, F)
      → bottleneck stage [G, L, G, L]
      → speaker split (bottleneck and every skip)            (J, ·, F)
      → R decoder stages [↑, concat skip, Linear, 3×(G, L, CS)]  (J, L, F)
      → output layer, ConvTranspose1d(256→C_out, K16 S4)     (J, C_out, T)

G is a global block (EGA + GCFN), L a local block (CLA + GCFN), CS a cross-speaker block. In
training, R auxiliary heads (one on each decoder stage's input: nearest upsampling, a masked
output layer and a decoder of their own) give the multi-loss outputs.

`SepReformer` pairs the network with its `eqx.nn.State` (BatchNorm running statistics), so that
`model(mixture)` is inference, as in every family; `forward(mixture, inference=False, key=key)` runs
training mode and returns the new statistics, for the train step to store back with `with_stats`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.framing import fit_length
from sepjax.models.base import Separator
from sepjax.models.sepreformer.blocks import RelativePositionKeys
from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.models.sepreformer.stages import DecoderStage, EncoderStage, OutputLayer, SpeakerSplit
from sepjax.nn.conv import ConvDecoder, ConvEncoder
from sepjax.nn.keys import split_keys
from sepjax.nn.linear import linear
from sepjax.nn.norm import GroupNorm1
from sepjax.nn.stack import cast_floating
from sepjax.nn.stateful_norm import StatefulNorm


def nearest_resize(x: Float[Array, "*lead time dim"], length: int) -> Float[Array, "*lead length dim"]:
    """Nearest-neighbour resampling of the time axis, as `torch.nn.functional.interpolate(mode='nearest')`."""
    if x.shape[-2] == length:
        return x
    source = (jnp.arange(length) * x.shape[-2]) // length
    return jnp.take(x, source, axis=-2)


class SepReformerNetwork(eqx.Module):
    """The network, one example at a time; stateful calls take and return the `eqx.nn.State`."""

    encoder: ConvEncoder
    project_norm: GroupNorm1
    project: eqx.nn.Linear
    positions: RelativePositionKeys
    enc_stages: tuple[EncoderStage, ...]
    bottleneck: EncoderStage
    splits: tuple[SpeakerSplit, ...]
    dec_stages: tuple[DecoderStage, ...]
    output: OutputLayer
    decoder: ConvDecoder
    aux_outputs: tuple[OutputLayer, ...]
    aux_decoders: tuple[ConvDecoder, ...]
    config: SepReformerConfig = eqx.field(static=True)

    def __init__(self, config: SepReformerConfig, *, key: PRNGKeyArray):
        c = config
        r = c.num_stages
        keys = iter(jax.random.split(key, 7 + 5 * r))  # enough for per-stage splits and auxiliary heads
        self.encoder = ConvEncoder(c.in_channels, c.encoder_channels, c.encoder_kernel, c.encoder_stride,
                                   use_bias=False, approximate_gelu=False, key=next(keys))
        self.project_norm = GroupNorm1(c.encoder_channels, eps=1e-8)
        self.project = eqx.nn.Linear(c.encoder_channels, c.dim, use_bias=False, key=next(keys))
        self.positions = RelativePositionKeys(c.dim // c.heads, c.max_relative_position, key=next(keys))
        self.enc_stages = tuple(EncoderStage(c, downsample=True, halvings=i, key=next(keys)) for i in range(r))
        self.bottleneck = EncoderStage(c, downsample=False, halvings=r, key=next(keys))
        splits = 1 if c.shared_split else r + 1
        self.splits = tuple(SpeakerSplit(c.dim, c.num_stems, key=next(keys)) for _ in range(splits))
        self.dec_stages = tuple(DecoderStage(c, halvings=r - 1 - i, key=next(keys)) for i in range(r))
        self.output = OutputLayer(c.dim, c.encoder_channels, masked=False, key=next(keys))
        self.decoder = ConvDecoder(c.encoder_channels, c.out_channels, c.encoder_kernel, c.encoder_stride,
                                   use_bias=False, kernels=c.kernels, key=next(keys))
        heads = r if c.aux_heads else 0
        self.aux_outputs = tuple(OutputLayer(c.dim, c.encoder_channels, masked=True, key=next(keys))
                                 for _ in range(heads))
        self.aux_decoders = tuple(ConvDecoder(c.encoder_channels, c.out_channels, c.encoder_kernel, c.encoder_stride,
                                              use_bias=False, kernels=c.kernels, key=next(keys)) for _ in range(heads))
        self.config = config

    def split(self, stage: int) -> SpeakerSplit:
        """The split layer for encoder skip `stage` (stage R is the bottleneck)."""
        return self.splits[0] if self.config.shared_split else self.splits[stage]

    def __call__(self, mixture: Float[Array, "in_channels time"], state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None):
        """Returns (estimates (J, C_out, T), auxiliary estimates (R, J, C_out, T) or None, state)."""
        c = self.config
        if mixture.shape[0] != c.in_channels:
            raise ValueError(f"expected {c.in_channels} input channel(s), got shape {mixture.shape}")
        length = mixture.shape[-1]
        if length < c.encoder_kernel:
            raise ValueError(f"input of {length} samples is shorter than the encoder kernel {c.encoder_kernel}")
        compute = jnp.dtype(c.dtype)
        net = cast_floating(self, compute, keep=StatefulNorm)
        r = c.num_stages
        k_enc, k_bottle, k_dec = split_keys(key, 3)

        encoded = net.encoder(mixture.astype(compute))
        frames = encoded.shape[0]
        h = linear(net.project, net.project_norm(encoded))
        unit = 2**r
        padded = -(-frames // unit) * unit
        h = jnp.pad(h, [(0, padded - frames), (0, 0)])
        positions = net.positions(padded // unit)

        skips = []
        for i, (stage, k) in enumerate(zip(net.enc_stages, split_keys(k_enc, r), strict=True)):
            h, skip, state = stage(h, positions, state, inference=inference, key=k)
            skips.append(net.split(i)(skip))
        h, _, state = net.bottleneck(h, positions, state, inference=inference, key=k_bottle)
        h = net.split(r)(h)

        stage_inputs = []
        for i, (stage, k) in enumerate(zip(net.dec_stages, split_keys(k_dec, r), strict=True)):
            stage_inputs.append(h)
            h, state = stage(h, skips[r - 1 - i], positions, state, inference=inference, key=k)

        def reconstruct(output: OutputLayer, decoder: ConvDecoder, streams):
            # An auxiliary head's input is at its stage's frame rate: the output layer's per-frame part runs
            # there, and its result is resampled to the encoding's rate (the same values, up to 16x fewer frames).
            def stream(s):
                return decoder(output.with_encoding(nearest_resize(output.per_frame(s), frames), encoded))

            return jax.vmap(stream)(streams)

        estimates = fit_length(reconstruct(net.output, net.decoder, h[:, :frames]), length)
        aux = None
        if not inference and net.aux_outputs:
            aux = jnp.stack([
                fit_length(reconstruct(out, dec, x), length)
                for out, dec, x in zip(net.aux_outputs, net.aux_decoders, stage_inputs, strict=True)])
            aux = aux.astype(mixture.dtype)
        return estimates.astype(mixture.dtype), aux, state


class SepReformer(Separator):
    """The network and its normalisation statistics; `model(mixture)` separates (inference mode)."""

    network: SepReformerNetwork
    stats: eqx.nn.State

    def __init__(self, config: SepReformerConfig, *, key: PRNGKeyArray):
        self.network, self.stats = eqx.nn.make_with_state(SepReformerNetwork)(config, key=key)

    @property
    def config(self) -> SepReformerConfig:
        return self.network.config

    def forward(self, mixture: Float[Array, "in_channels time"], *, inference: bool,
                key: PRNGKeyArray | None = None):
        """(estimates, auxiliary estimates in training mode or None, statistics). Training mode takes BatchNorm
        statistics from the whole batch: call it under `jax.vmap(..., axis_name="batch")`
        (`sepjax.train.step.training_forward`)."""
        stats = jax.tree.map(lambda x: x, self.stats)  # a fresh State: eqx invalidates the one it updates
        return self.network(mixture, stats, inference=inference, key=key)
