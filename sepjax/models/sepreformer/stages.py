"""The stages the paper's SepReformer is assembled from: encoder and decoder stages, the speaker
split, the downsampling layer and the output layer. Every stage threads the `eqx.nn.State` that
holds BatchNorm statistics (unchanged when the model uses GroupNorm)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.models.sepreformer.blocks import CrossSpeakerBlock, GlobalBlock, LocalBlock
from sepjax.models.sepreformer.config import SepReformerConfig
from sepjax.nn.activation import Activation, glu
from sepjax.nn.depthwise import DepthwiseConv
from sepjax.nn.keys import split_keys
from sepjax.nn.linear import linear
from sepjax.nn.norm import GroupNorm1
from sepjax.nn.remat import recomputed
from sepjax.nn.stack import scan_alike
from sepjax.nn.stateful_norm import BATCH_AXIS, StatefulNorm

STEM_AXIS = "stem"
"""The vmap axis name of the decoder's shared-weight streams; decoder BatchNorms average over it too."""


CPU_FAST_UNROLLED_RATES = 2
"""With `kernels="cpu_fast"`, the stages at the encoder's frame rate and at half of it apply their repeated
blocks one after another instead of as one `lax.scan` (the first two encoder stages and the last two decoder
stages). XLA:CPU writes a scan's saved activations into their stacked buffers on one thread; at these stages,
which hold most of the activations, unrolling took SepReformer-T's train step to 0.86-0.88 of the all-scan
step's time in paired runs, at the same compile time (docs/performance.md). The coarser stages keep the scan,
which compiles their repeats once: unrolling a third rate as well cost up to a third more compile."""


def stage_unrolled(c: SepReformerConfig, halvings: int) -> bool:
    """Whether a stage at 1/2^`halvings` of the encoder's frame rate unrolls its repeated blocks."""
    return c.unroll or (c.kernels == "cpu_fast" and halvings < CPU_FAST_UNROLLED_RATES)


def maybe_remat(fn: Callable[..., Any], remat: bool) -> Callable[..., Any]:
    return recomputed(fn) if remat else fn


def global_block(c: SepReformerConfig, key: PRNGKeyArray) -> GlobalBlock:
    return GlobalBlock(c.dim, c.heads, dropout=c.dropout, layer_scale_init=c.layer_scale_init,
                       impl=c.attention_impl, kernels=c.kernels, key=key)


def local_block(c: SepReformerConfig, axis_name, key: PRNGKeyArray) -> LocalBlock:
    return LocalBlock(c.dim, c.local_kernel, norm=c.norm, activation=c.activation, dropout=c.dropout,
                      layer_scale_init=c.layer_scale_init, axis_name=axis_name, kernels=c.kernels, key=key)


class Downsample(eqx.Module):
    """Depthwise conv (stride 2), norm, activation: halves the frame rate."""

    conv: DepthwiseConv
    norm: StatefulNorm
    act: Activation

    def __init__(self, c: SepReformerConfig, *, key: PRNGKeyArray):
        self.conv = DepthwiseConv(c.dim, c.down_kernel, stride=2, key=key)
        self.norm = StatefulNorm(c.dim, c.norm, axis_name=BATCH_AXIS)
        self.act = Activation(c.dim, c.activation)

    def __call__(self, x: Float[Array, "time dim"], state: eqx.nn.State, *, inference: bool
                 ) -> tuple[Float[Array, "half dim"], eqx.nn.State]:
        y, state = self.norm(self.conv(x), state, inference=inference)
        return self.act(y), state


class EncoderStage(eqx.Module):
    """Global, Local, Global, Local; returns the (downsampled) output and the skip taken before downsampling."""

    blocks: tuple[GlobalBlock, LocalBlock, GlobalBlock, LocalBlock]
    down: Downsample | None
    remat: bool = eqx.field(static=True)
    unroll: bool = eqx.field(static=True)

    def __init__(self, c: SepReformerConfig, *, downsample: bool, halvings: int, key: PRNGKeyArray):
        k = jax.random.split(key, 5)
        self.blocks = (global_block(c, k[0]), local_block(c, BATCH_AXIS, k[1]),
                       global_block(c, k[2]), local_block(c, BATCH_AXIS, k[3]))
        self.down = Downsample(c, key=k[4]) if downsample else None
        self.remat = c.remat
        self.unroll = stage_unrolled(c, halvings)

    def __call__(self, x: Float[Array, "time dim"], positions: Array, state: eqx.nn.State, *, inference: bool,
                 key: PRNGKeyArray | None = None):
        def pair(blocks: tuple[GlobalBlock, LocalBlock], h, state, k):
            glob, loc = blocks
            k_g, k_l = split_keys(k)
            h = maybe_remat(lambda h, kk: glob(h, positions, inference=inference, key=kk), self.remat)(h, k_g)
            return maybe_remat(lambda h, s, kk: loc(h, s, inference=inference, key=kk), self.remat)(h, state, k_l)

        pairs = (self.blocks[:2], self.blocks[2:])
        x, state = scan_alike(pairs, x, state, pair, key=key, unroll=self.unroll)
        skip = x
        if self.down is not None:
            x, state = self.down(x, state, inference=inference)
        return x, skip, state


class SpeakerSplit(eqx.Module):
    """Linear(F→4FJ), GLU, Linear(2FJ→FJ), one stream per stem, GroupNorm(1) per stream."""

    expand: eqx.nn.Linear
    shrink: eqx.nn.Linear
    norm: GroupNorm1
    num_stems: int = eqx.field(static=True)

    def __init__(self, dim: int, num_stems: int, *, key: PRNGKeyArray):
        k_expand, k_shrink = jax.random.split(key)
        self.expand = eqx.nn.Linear(dim, 4 * dim * num_stems, key=k_expand)
        self.shrink = eqx.nn.Linear(2 * dim * num_stems, dim * num_stems, key=k_shrink)
        self.norm = GroupNorm1(dim, eps=1e-8)
        self.num_stems = num_stems

    def __call__(self, x: Float[Array, "time dim"]) -> Float[Array, "stems time dim"]:
        time, dim = x.shape
        h = linear(self.shrink, glu(linear(self.expand, x)))
        return self.norm(jnp.swapaxes(h.reshape(time, self.num_stems, dim), 0, 1))


class DecoderStage(eqx.Module):
    """Nearest upsampling to the skip's length, concatenation with the split skip, Linear(2F→F),
    then three rounds of Global, Local (both shared across stems, vmapped) and cross-speaker blocks."""

    fuse: eqx.nn.Linear
    rounds: tuple[tuple[GlobalBlock, LocalBlock, CrossSpeakerBlock], ...]
    remat: bool = eqx.field(static=True)
    unroll: bool = eqx.field(static=True)

    def __init__(self, c: SepReformerConfig, *, halvings: int, key: PRNGKeyArray):
        k_fuse, *k = jax.random.split(key, 10)
        self.fuse = eqx.nn.Linear(2 * c.dim, c.dim, key=k_fuse)
        self.rounds = tuple(
            (global_block(c, k[3 * i]), local_block(c, (BATCH_AXIS, STEM_AXIS), k[3 * i + 1]),
             CrossSpeakerBlock(c.dim, c.heads, dropout=c.dropout, layer_scale_init=c.layer_scale_init,
                               impl=c.attention_impl, kernels=c.kernels, key=k[3 * i + 2]))
            for i in range(3))
        self.remat = c.remat
        self.unroll = stage_unrolled(c, halvings)

    def __call__(self, x: Float[Array, "stems coarse dim"], skip: Float[Array, "stems time dim"], positions: Array,
                 state: eqx.nn.State, *, inference: bool, key: PRNGKeyArray | None = None):
        stems, time = skip.shape[0], skip.shape[1]
        # Linear(2F→F) of [upsampled x, skip] is the upsampled projection of x plus the projection of the skip:
        # x's half runs at x's frame rate, and the concatenation is never formed.
        weight, dim = self.fuse.weight.astype(x.dtype), x.shape[-1]
        coarse = x @ weight[:, :dim].T
        h = jnp.repeat(coarse, time // x.shape[1], axis=1) + skip @ weight[:, dim:].T + self.fuse.bias.astype(x.dtype)

        def round_(blocks: tuple[GlobalBlock, LocalBlock, CrossSpeakerBlock], h, state, k):
            glob, loc, cs = blocks
            k_g, k_l, k_cs = split_keys(k, 3)
            k_g, k_l = (None, None) if k is None else (jax.random.split(k_g, stems), jax.random.split(k_l, stems))

            def run_global(h, keys):
                return jax.vmap(lambda s, kk: glob(s, positions, inference=inference, key=kk))(h, keys)

            def run_local(h, state, keys):
                return jax.vmap(lambda s, kk: loc(s, state, inference=inference, key=kk), axis_name=STEM_AXIS,
                                out_axes=(0, None))(h, keys)

            h = maybe_remat(run_global, self.remat)(h, k_g)
            h, state = maybe_remat(run_local, self.remat)(h, state, k_l)
            return maybe_remat(lambda h, kk: cs(h, inference=inference, key=kk), self.remat)(h, k_cs), state

        return scan_alike(self.rounds, h, state, round_, key=key, unroll=self.unroll)


class OutputLayer(eqx.Module):
    """Linear(F→4F), GLU, Linear(2F→encoder channels); `masked` multiplies ReLU of that by the encoding.

    Everything before the product with the encoding works on each frame alone (`per_frame`), so it commutes
    with nearest-neighbour resampling of the time axis: an auxiliary head runs it at its stage's frame rate and
    resamples the result, the same values as resampling first."""

    up: eqx.nn.Linear
    down: eqx.nn.Linear
    masked: bool = eqx.field(static=True)

    def __init__(self, dim: int, encoder_channels: int, *, masked: bool, key: PRNGKeyArray):
        k_up, k_down = jax.random.split(key)
        self.up = eqx.nn.Linear(dim, 4 * dim, key=k_up)
        self.down = eqx.nn.Linear(2 * dim, encoder_channels, key=k_down)
        self.masked = masked

    def per_frame(self, x: Float[Array, "time dim"]) -> Float[Array, "time channels"]:
        """The output before the product with the encoding: ReLU(Linear(GLU(Linear(x)))) when `masked`."""
        y = linear(self.down, glu(linear(self.up, x)))
        return jax.nn.relu(y) if self.masked else y

    def __call__(self, x: Float[Array, "time dim"], encoded: Float[Array, "time channels"]
                 ) -> Float[Array, "time channels"]:
        return self.with_encoding(self.per_frame(x), encoded)

    def with_encoding(self, y: Float[Array, "time channels"], encoded: Float[Array, "time channels"]
                      ) -> Float[Array, "time channels"]:
        """`per_frame`'s output at the encoding's frame rate, times the encoding when `masked`."""
        return y * encoded if self.masked else y
