"""The depthwise convolution's backward: the taps' gradient as one reduction per tap, or as one grouped
convolution (`sepjax.nn.depthwise`, which picks by kernel length at `LONG_KERNEL`).

    python benchmarks/depthwise.py

Times jitted gradients (input and taps) of `depthwise_conv` at the paper model's shapes (batch 2): CLA's
65-tap kernel at the stage lengths of 4 s at 8 kHz, GCFN's 3 taps and the downsampling's 5 taps at stride 2.
Both variants run in the same process, alternating; the last line is JSON with each shape's median
milliseconds, compile seconds and `speedup` (per-tap ÷ convolution).
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp

import sepjax.nn.depthwise as depthwise

SHAPES = [(8000, 64, 65, 1), (8000, 128, 65, 1), (2000, 128, 65, 1), (8000, 64, 5, 2), (8000, 384, 3, 1),
          (1000, 384, 3, 1)]
"""(time, channels, kernel, stride)."""


def per_tap(padded, grad, kernel, stride):
    span = (grad.shape[0] - 1) * stride + 1
    return jnp.stack([jnp.einsum("tc,tc->c", padded[i : i + span : stride], grad) for i in range(kernel)], 1)


def as_convolution(padded, grad, kernel, stride):
    taps = jax.lax.conv_general_dilated(padded[None], grad[:, None, :], window_strides=(1,), padding=[(0, 0)],
                                        rhs_dilation=(stride,), dimension_numbers=("NWC", "WIO", "NWC"),
                                        feature_group_count=grad.shape[1])
    return taps[0, :kernel].T


def compiled_gradient(tap_gradient, x, taps, stride):
    depthwise._tap_gradient = tap_gradient  # read when the backward is traced

    def loss(x, t):
        return jnp.sum(jax.vmap(lambda v: depthwise.depthwise_conv(v, t, stride))(x) ** 2)

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, taps).compile()
    return compiled, time.perf_counter() - start


def main(repeats: int = 7) -> dict:
    original = depthwise._tap_gradient
    rows = []
    try:
        for length, channels, kernel, stride in SHAPES:
            x = jax.random.normal(jax.random.PRNGKey(0), (2, length, channels))
            taps = jax.random.normal(jax.random.PRNGKey(1), (channels, kernel))
            variants = {name: compiled_gradient(fn, x, taps, stride)
                        for name, fn in (("per_tap", per_tap), ("convolution", as_convolution))}
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
                   "speedup": round(ms["per_tap"] / ms["convolution"], 2),
                   "chosen": "convolution" if kernel >= depthwise.LONG_KERNEL else "per_tap"}
            print(row, flush=True)
            rows.append(row)
    finally:
        depthwise._tap_gradient = original
    return {"device": str(jax.devices()[0]), "long_kernel": depthwise.LONG_KERNEL, "shapes": rows}


if __name__ == "__main__":
    print(json.dumps(main()))
