"""The depthwise convolution's backward: the taps' gradient as one reduction per tap, as the taps' stacked
products reduced at once, as one grouped convolution, or as one batched matmul over blocks of time
(`sepjax.nn.depthwise`, which picks by kernel length at `LONG_KERNEL`: the stacked products below it, the
blocked matmul from it at stride 1).

    python benchmarks/depthwise.py

Times jitted gradients (input and taps) of `depthwise_conv` at the paper model's shapes (batch 2): CLA's
65-tap kernel at the stage lengths of 4 s at 8 kHz, GCFN's 3 taps and the downsampling's 5 taps at stride 2,
compiled as the train step is (`CPU_COMPILER_OPTIONS` on a CPU). The variants run in the same process,
alternating; the last line is JSON with each shape's median milliseconds and compile seconds per variant,
the variant `sepjax.nn.depthwise` chooses, and `speedup`: the convolution's time ÷ the chosen variant's.
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp

import sepjax.nn.depthwise as depthwise
from sepjax.train.step import CPU_COMPILER_OPTIONS

SHAPES = [(8000, 64, 65, 1), (8000, 128, 65, 1), (2000, 128, 65, 1), (8000, 64, 5, 2), (8000, 384, 3, 1),
          (1000, 384, 3, 1)]
"""(time, channels, kernel, stride)."""


def per_tap(padded, grad, kernel, stride):
    span = (grad.shape[0] - 1) * stride + 1
    return jnp.stack([jnp.einsum("tc,tc->c", padded[i : i + span : stride], grad) for i in range(kernel)], 1)


def products(padded, grad, kernel, stride):
    span = (grad.shape[0] - 1) * stride + 1
    return jnp.sum(jnp.stack([padded[i : i + span : stride] * grad for i in range(kernel)]), axis=1).T


def as_convolution(padded, grad, kernel, stride):
    taps = jax.lax.conv_general_dilated(padded[None], grad[:, None, :], window_strides=(1,), padding=[(0, 0)],
                                        rhs_dilation=(stride,), dimension_numbers=("NWC", "WIO", "NWC"),
                                        feature_group_count=grad.shape[1])
    return taps[0, :kernel].T


def blocked(padded, grad, kernel, stride):
    return depthwise._blocked_tap_gradient(padded, grad, kernel)


def compiled_gradient(tap_gradient, x, taps, stride):
    depthwise._tap_gradient = tap_gradient  # read when the backward is traced
    frames = (x.shape[1] - 1) // stride + 1
    cotangent = jax.random.normal(jax.random.PRNGKey(2), (x.shape[0], frames, x.shape[2]))

    def loss(x, t):  # a fixed cotangent: the backward does not recompute the forward
        return jnp.sum(jax.vmap(lambda v: depthwise.depthwise_conv(v, t, stride))(x) * cotangent)

    options = CPU_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1)), compiler_options=options).lower(x, taps).compile()
    return compiled, time.perf_counter() - start


def chosen(kernel: int, stride: int) -> str:
    if kernel < depthwise.LONG_KERNEL:
        return "products"
    return "blocked" if stride == 1 else "convolution"


def main(repeats: int = 7) -> dict:
    original = depthwise._tap_gradient
    rows = []
    try:
        for length, channels, kernel, stride in SHAPES:
            x = jax.random.normal(jax.random.PRNGKey(0), (2, length, channels))
            taps = jax.random.normal(jax.random.PRNGKey(1), (channels, kernel))
            candidates = [("per_tap", per_tap), ("products", products), ("convolution", as_convolution)]
            if stride == 1:
                candidates.append(("blocked", blocked))
            variants = {name: compiled_gradient(fn, x, taps, stride) for name, fn in candidates}
            times = {name: [] for name in variants}
            for _ in range(repeats):
                for name, (compiled, _) in variants.items():
                    jax.block_until_ready(compiled(x, taps))
                    start = time.perf_counter()
                    jax.block_until_ready(compiled(x, taps))
                    times[name].append(time.perf_counter() - start)
            ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            row = {"time": length, "channels": channels, "kernel": kernel, "stride": stride,
                   **{f"{name}_ms": round(v, 2) for name, v in ms.items()},
                   **{f"{name}_compile_s": round(c, 2) for name, (_, c) in variants.items()},
                   "chosen": chosen(kernel, stride),
                   "speedup": round(ms["convolution"] / ms[chosen(kernel, stride)], 2)}
            print(row, flush=True)
            rows.append(row)
    finally:
        depthwise._tap_gradient = original
    return {"device": str(jax.devices()[0]), "long_kernel": depthwise.LONG_KERNEL, "tap_block": depthwise.TAP_BLOCK,
            "shapes": rows}


if __name__ == "__main__":
    print(json.dumps(main()))
