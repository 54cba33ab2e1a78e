"""Live streaming's latency and real-time factor (`sepjax stream`), for a bundle (default: the shipped
`chorales-satb`).

    python benchmarks/stream.py [BUNDLE] [--seconds 20] [--chunk-seconds S] [--overlap 0.5]

Two runs of `separate_stream` with a length-free plan and one chunk per model call, as `sepjax stream` runs:
  1. as fast as it goes: the real-time factor (audio seconds per wall second) and each chunk's compute time;
  2. paced: blocks of one hop released at real-time pace, and for every finished piece the wall time from the
     recording of its first sample to its emission: the delay a listener's player must buffer.
The yardsticks in the same run: the algorithmic bound (chunk + hop) and offline `separate_array` (batches of 4)
on the same audio. The last line is JSON: {"bundle", "chunk_seconds", "hop_seconds", "latency_bound_seconds",
"realtime_factor", "offline_realtime_factor", "chunk_compute_ms": {"median", "p95"}, "latency_seconds":
{"median", "p95", "max"}}.
"""

import argparse
import json
import sys
import time

import numpy as np

from sepjax.inference.bundle import load_bundle
from sepjax.inference.pretrained import resolve_bundle
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array, separate_stream


class Timed:
    """A chunk function that records each call's wall time."""

    def __init__(self, model_fn):
        self.model_fn, self.times = model_fn, []

    def __call__(self, chunks):
        start = time.perf_counter()
        out = self.model_fn(chunks)
        self.times.append(time.perf_counter() - start)
        return out


def paced_latencies(model_fn, audio: np.ndarray, config: InferenceConfig, rate: int) -> list[float]:
    """Release one hop of input each time its last sample would have been recorded by a live source; for each
    emitted piece, the wall time from the recording of its first sample, the one that waited longest, to its
    emission."""
    hop = config.plan(None).hop
    start = time.perf_counter()

    def arriving():
        for first in range(0, audio.shape[-1], hop):
            block = audio[:, first:first + hop]
            time.sleep(max(start + (first + block.shape[-1]) / rate - time.perf_counter(), 0.0))
            yield block

    latencies, emitted = [], 0
    for piece in separate_stream(model_fn, arriving(), None, audio.shape[0], config):
        latencies.append(time.perf_counter() - (start + (emitted + 1) / rate))  # its first sample waited longest
        emitted += piece.shape[-1]
    return latencies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", nargs="?", default="chorales-satb")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--chunk-seconds", type=float, default=None, help="default: the bundle's")
    p.add_argument("--overlap", type=float, default=0.5)
    args = p.parse_args()
    bundle = load_bundle(resolve_bundle(args.bundle))
    rate = bundle.sample_rate
    chunk = int(round((args.chunk_seconds or bundle.chunk_seconds or 2.0) * rate))
    config = InferenceConfig(chunk=chunk, overlap=args.overlap, batch_size=1, normalize="none")
    hop = config.plan(None).hop
    audio = (np.random.default_rng(0).standard_normal((bundle.config.in_channels, int(args.seconds * rate)))
             * 0.1).astype(np.float32)
    model_fn = Timed(BatchedModel(bundle.model, 1))
    list(separate_stream(model_fn, [audio[:, : 2 * chunk]], None, audio.shape[0], config))  # compiles
    model_fn.times.clear()
    start = time.perf_counter()
    for _ in separate_stream(model_fn, iter(np.array_split(audio, max(audio.shape[-1] // hop, 1), axis=-1)),
                             None, audio.shape[0], config):
        pass
    fast = time.perf_counter() - start
    compute_ms = np.asarray(model_fn.times) * 1e3
    offline_config = InferenceConfig(chunk=chunk, overlap=args.overlap, batch_size=4, normalize="none")
    offline_fn = BatchedModel(bundle.model, 4)
    separate_array(offline_fn, audio[:, : 2 * chunk], offline_config)
    start = time.perf_counter()
    separate_array(offline_fn, audio, offline_config)
    offline = time.perf_counter() - start
    latencies = np.asarray(paced_latencies(model_fn, audio, config, rate))
    result = {
        "bundle": args.bundle, "sample_rate": rate, "audio_seconds": args.seconds,
        "chunk_seconds": chunk / rate, "hop_seconds": hop / rate, "latency_bound_seconds": (chunk + hop) / rate,
        "realtime_factor": args.seconds / fast, "offline_realtime_factor": args.seconds / offline,
        "chunk_compute_ms": {"median": float(np.median(compute_ms)), "p95": float(np.percentile(compute_ms, 95))},
        "latency_seconds": {"median": float(np.median(latencies)), "p95": float(np.percentile(latencies, 95)),
                            "max": float(latencies.max())},
    }
    lat = result["latency_seconds"]
    print(f"{args.bundle}: chunks of {chunk / rate:.2f} s every {hop / rate:.2f} s; streams at "
          f"{result['realtime_factor']:.1f}x real time (offline, batches of 4: "
          f"{result['offline_realtime_factor']:.1f}x); paced latency median {lat['median']:.3f} s, max "
          f"{lat['max']:.3f} s (bound {result['latency_bound_seconds']:.3f} s + compute)", flush=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
