"""Strided conv encoder and transposed-conv decoder between waveforms and latent frames.

Parameters live in `eqx.nn.Conv1d` / `eqx.nn.ConvTranspose1d` (same layout, same init); the
forward pass frames the signal by reshape and runs a matmul (plus overlap-add for the decoder),
which XLA runs far faster on CPU than a strided or lhs-dilated convolution.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from sepjax.framing import frame, overlap_add
from sepjax.nn.kernels import Kernels
from sepjax.nn.kernels.projection import project


class ConvEncoder(eqx.Module):
    """Conv1d(in_channels→dim, K, S) then GELU; waveform (channels, T) → frames (L, dim)."""

    conv: eqx.nn.Conv1d
    approximate_gelu: bool = eqx.field(static=True, default=True)

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int, *, use_bias: bool = True,
                 approximate_gelu: bool = True, key: PRNGKeyArray):
        self.conv = eqx.nn.Conv1d(in_channels, dim, kernel, stride=stride, use_bias=use_bias, key=key)
        self.approximate_gelu = approximate_gelu

    def __call__(self, x: Float[Array, "channels time"]) -> Float[Array, "frames dim"]:
        frames = frame(x, self.conv.kernel_size[0], self.conv.stride[0])
        h = jnp.einsum("clk,dck->ld", frames, self.conv.weight.astype(x.dtype))
        if self.conv.bias is not None:
            h = h + self.conv.bias[:, 0].astype(x.dtype)
        return jax.nn.gelu(h, approximate=self.approximate_gelu)


class ConvDecoder(eqx.Module):
    """ConvTranspose1d(dim→out_channels, K, S); frames (L, dim) → waveform (channels, (L−1)S+K).

    Each frame's channels × K output samples are one projection of the frame, `h @ Wᵀ` with W of
    (channels·K, dim), overlap-added. `kernels="cpu_fast"` takes that projection's weight gradient from
    `kernels.projection.project`, which transposes the narrow (L, channels·K) gradient instead of the
    (L, dim) frames.
    """

    conv: eqx.nn.ConvTranspose1d
    kernels: Kernels = eqx.field(static=True, default="reference")

    def __init__(self, dim: int, out_channels: int, kernel: int, stride: int, *, use_bias: bool = True,
                 kernels: Kernels = "reference", key: PRNGKeyArray):
        self.conv = eqx.nn.ConvTranspose1d(dim, out_channels, kernel, stride=stride, use_bias=use_bias, key=key)
        self.kernels = kernels

    def __call__(self, h: Float[Array, "frames dim"]) -> Float[Array, "channels time"]:
        # eqx's transposed conv is the transpose of a conv with the kernel flipped.
        weight = jnp.flip(self.conv.weight, axis=-1).astype(h.dtype)  # (channels, dim, K)
        channels, dim, kernel = weight.shape
        rows = jnp.swapaxes(weight, 1, 2).reshape(channels * kernel, dim)
        samples = project(h, rows) if self.kernels == "cpu_fast" else h @ rows.T
        frames = jnp.swapaxes(samples.reshape(h.shape[0], channels, kernel), 0, 1)  # (channels, L, K)
        waves = overlap_add(frames, self.conv.stride[0])
        return waves if self.conv.bias is None else waves + self.conv.bias.astype(h.dtype)
