"""How much faster than real time the separators run: the shipped models and the tiny models at native rates
(`separate.py` measures the tutorial-sized models at 44.1 kHz stereo, memory and the SDR speed-up).

    python benchmarks/realtime.py [--seconds 60] [--repeats 3]

For each model, `separate_array` (chunked overlap-add, half overlap, batches of 4) on `--seconds` of noise at
the model's sample rate, after one warm-up pass that compiles; the best of `--repeats` timings. The real-time
factor is audio seconds per wall-clock second. The last line is JSON: {"models": [{"name", "sample_rate",
"chunk_seconds", "seconds", "realtime_factor"}]}.
"""

import argparse
import json
import sys
import time

import jax
import numpy as np

from sepjax.inference.bundle import load_bundle
from sepjax.inference.pretrained import shipped_bundles
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array
from sepjax.models import build_model, get_config

TINY = {"dual-path-sepreformer-tiny (44.1 kHz stereo)": (get_config("dual-path-sepreformer-tiny", in_channels=2,
                                                                     out_channels=2), 44100, 2.0),
        "sepreformer-tiny (8 kHz)": (get_config("sepreformer-tiny"), 8000, 4.0)}


def measure(model, channels: int, rate: int, chunk_seconds: float, seconds: float, repeats: int) -> float:
    config = InferenceConfig(chunk=int(chunk_seconds * rate), overlap=0.5, batch_size=4)
    run = BatchedModel(model, config.batch_size)
    audio = (np.random.default_rng(0).standard_normal((channels, int(seconds * rate))) * 0.1).astype(np.float32)
    separate_array(run, audio[:, : config.chunk * 2], config)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        separate_array(run, audio, config)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    candidates = []
    for name, path in shipped_bundles().items():
        bundle = load_bundle(path)
        candidates.append((name, bundle.model, bundle.config.in_channels, bundle.sample_rate,
                           bundle.chunk_seconds or 2.0))
    for name, (config, rate, chunk_seconds) in TINY.items():
        candidates.append((name, build_model(config, key=jax.random.PRNGKey(0)), config.in_channels, rate,
                           chunk_seconds))
    rows = []
    for name, model, channels, rate, chunk_seconds in candidates:
        wall = measure(model, channels, rate, chunk_seconds, args.seconds, args.repeats)
        rows.append({"name": name, "sample_rate": rate, "chunk_seconds": chunk_seconds, "seconds": wall,
                     "realtime_factor": args.seconds / wall})
        print(f"{name:<48} {args.seconds / wall:8.1f}x real time", flush=True)
    print(json.dumps({"audio_seconds": args.seconds, "models": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
