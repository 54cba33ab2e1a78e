"""Depthwise 1-D convolution over channel-last sequences, with PyTorch's `Conv1d(groups=channels)` semantics."""

from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray


class DepthwiseConv(eqx.Module):
    """One `kernel`-tap filter per channel, zero padding (kernel−1)/2 each side, optional stride.

    Parameters live in an `eqx.nn.Conv1d(groups=channels)` (same layout and init as PyTorch's).
    """

    conv: eqx.nn.Conv1d

    def __init__(self, channels: int, kernel: int, *, stride: int = 1, key: PRNGKeyArray):
        if kernel % 2 == 0:
            raise ValueError(f"depthwise kernel {kernel} must be odd for symmetric padding")
        self.conv = eqx.nn.Conv1d(channels, channels, kernel, stride=stride, padding=(kernel - 1) // 2,
                                  groups=channels, key=key)

    def __call__(self, x: Float[Array, "time channels"]) -> Float[Array, "frames channels"]:
        taps = self.conv.weight[:, 0, :].astype(x.dtype)  # (channels, kernel)
        return depthwise_conv(x, taps, self.conv.stride[0]) + self.conv.bias[:, 0].astype(x.dtype)


def _frames(time: int, stride: int) -> int:
    return (time - 1) // stride + 1  # (time + 2·pad − kernel) // stride + 1 with pad = (kernel − 1) / 2


def _shifted_sum(padded: Array, taps: Array, frames: int, stride: int) -> Array:
    span = (frames - 1) * stride + 1
    return sum(padded[i : i + span : stride] * taps[:, i] for i in range(taps.shape[1]))


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv(x: Float[Array, "time channels"], taps: Float[Array, "channels kernel"],
                   stride: int) -> Float[Array, "frames channels"]:
    """A sum of shifted, scaled copies: one fused elementwise loop, ~4x faster on CPU than XLA's grouped conv.

    The hand-written backward keeps only `x` (autodiff would keep every shifted copy: `kernel` times
    the activation memory) and is itself two shifted sums.
    """
    pad = (taps.shape[1] - 1) // 2
    return _shifted_sum(jnp.pad(x, [(pad, pad), (0, 0)]), taps, _frames(x.shape[0], stride), stride)


LONG_KERNEL = 9
"""From this many taps the taps' gradient is one batched matmul over blocks of time (`_blocked_tap_gradient`;
CLA's 65 taps: 2.5-2.9x faster forward and backward than XLA:CPU's grouped convolution, which runs on Eigen's
packed GEMM); below it, the taps' products reduced over time at once (3 and 5 taps, where the matmul's extra
copies cost more than the products). `benchmarks/depthwise.py` measures the variants (docs/performance.md)."""

TAP_BLOCK = 64
"""Frames per block of `_blocked_tap_gradient` (at least kernel − 1): its matmul does (block + kernel − 1) /
kernel times the multiply-adds of the direct sum, on data that fits in cache."""


def _blocked_tap_gradient(padded: Array, grad: Array, kernel: int) -> Array:
    """d taps[c, i] = Σ_t padded[i + t, c] · grad[t, c] (stride 1) as one batched matmul.

    Cut time into blocks of L = `TAP_BLOCK` frames. For block b, the gradient's rows g_b[s] = grad[bL + s]
    and the input's window w_b[j] = padded[bL + j], j < L + kernel − 1, hold every product the block adds to
    lag i: g_b[s] · w_b[s + i]. So P[c, s, j] = Σ_b g_b[s, c] · w_b[j, c] (a matmul per channel over the
    blocks) gives d taps[c, i] = Σ_s P[c, s, s + i]: the sum of P's i-th diagonal, which the flattened rows
    of width W = L + kernel − 1 read back with a row stride of W + 1.
    """
    time, channels = grad.shape
    block = max(TAP_BLOCK, kernel - 1)
    blocks = -(-time // block)
    grad_blocks = jnp.pad(grad, [(0, blocks * block - time), (0, 0)]).reshape(blocks, block, channels)
    rows = jnp.pad(padded, [(0, (blocks + 1) * block - padded.shape[0]), (0, 0)]).reshape(blocks + 1, block,
                                                                                           channels)
    windows = jnp.concatenate([rows[:blocks], rows[1:, : kernel - 1]], axis=1)  # (blocks, W, channels)
    width = block + kernel - 1
    products = jnp.einsum("bsc,bjc->csj", grad_blocks, windows).reshape(channels, block * width)
    diagonals = jnp.pad(products, [(0, 0), (0, block)]).reshape(channels, block, width + 1)[:, :, :kernel]
    return jnp.sum(diagonals, axis=1)  # (channels, kernel)


def _tap_gradient(padded: Array, grad: Array, kernel: int, stride: int) -> Array:
    """d taps[c, i] = Σ_j padded[i + j·stride, c] · grad[j, c]."""
    if kernel < LONG_KERNEL:
        # The taps' products as one stacked array, reduced over time at once: XLA:CPU fuses the shifted reads
        # into the products, where one reduction per tap copies each shifted slice out first.
        span = (grad.shape[0] - 1) * stride + 1
        return jnp.sum(jnp.stack([padded[i : i + span : stride] * grad for i in range(kernel)]), axis=1).T
    if stride == 1:
        return _blocked_tap_gradient(padded, grad, kernel)
    # A grouped correlation of the padded input with the gradient (dilated by the stride) as its filter.
    taps = lax.conv_general_dilated(padded[None], grad[:, None, :], window_strides=(1,), padding=[(0, 0)],
                                    rhs_dilation=(stride,), dimension_numbers=("NWC", "WIO", "NWC"),
                                    feature_group_count=grad.shape[1])
    return taps[0, :kernel].T


def _depthwise_fwd(x, taps, stride):
    return depthwise_conv(x, taps, stride), (x, taps)


def _depthwise_bwd(stride, residuals, grad):
    x, taps = residuals
    time, kernel = x.shape[0], taps.shape[1]
    pad = (kernel - 1) // 2
    padded = jnp.pad(x, [(pad, pad), (0, 0)])
    span = (grad.shape[0] - 1) * stride + 1
    grad_taps = _tap_gradient(padded, grad, kernel, stride)
    # d padded[j] = Σ_i taps[i]·g↑[j − i], with g↑ the gradient dilated by the stride: a correlation with the
    # flipped filter. Only the unpadded rows j ∈ [pad, pad + time) are needed.
    dilated = lax.pad(grad, jnp.zeros((), grad.dtype),
                      [(kernel - 1, time + 2 * pad - span, stride - 1), (0, 0, 0)])
    offset = pad + kernel - 1
    grad_x = sum(dilated[offset - i : offset - i + time] * taps[:, i] for i in range(kernel))
    return grad_x.astype(x.dtype), grad_taps.astype(taps.dtype)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)
