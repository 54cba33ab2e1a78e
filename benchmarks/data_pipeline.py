"""Data pipeline throughput against the tiny model's training-step consumption.

    python benchmarks/data_pipeline.py [--corpus data/chorales-16k --limit 40 --batches 30]

Renders the chorale corpus into --corpus if it is not there (16 kHz), then times the grain
training pipeline at the default chorale training configuration (8 kHz, so every read also
resamples; 2 s segments; batch 8; gain, remix and subset augmentation) with 0 and 2 worker
processes, and the jitted train step of `dual-path-sepreformer-tiny` on batches of the same shape.
The target is a pipeline at least 10x faster than the step consumes. The last line is JSON:
segments_per_s (per worker count), step_segments_per_s and ratio (best pipeline / step).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from sepjax.data.augment import AugmentConfig
from sepjax.data.chorales import build_chorales
from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.data.pipeline import PipelineConfig, training_dataset


def pipeline_config(workers: int) -> PipelineConfig:
    return PipelineConfig(sample_rate=8000, segment_seconds=2.0, batch_size=8, seed=0, num_workers=workers,
                          augment=AugmentConfig(gain_db=(-3.0, 3.0), remix_prob=0.5, subset_prob=0.2),
                          shard_index=0, shard_count=1)


def time_pipeline(index, workers: int, batches: int) -> float:
    it = iter(training_dataset(index, pipeline_config(workers)))
    next(it)  # start-up (worker processes, first reads) is not throughput
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * pipeline_config(workers).batch_size / (time.perf_counter() - start)


def time_step(index, steps: int) -> float:
    import jax

    from sepjax.models import build_model, get_config
    from sepjax.train import Batch, TrainState, make_optimizer, train_step

    config = get_config("dual-path-sepreformer-tiny", num_stems=len(index.stems))
    optimizer = make_optimizer()
    state = TrainState.create(build_model(config, key=jax.random.PRNGKey(0)), optimizer, key=jax.random.PRNGKey(0))
    data = next(iter(training_dataset(index, pipeline_config(0))))
    batch = Batch.from_targets(data["targets"], data["mask"])
    state, metrics = train_step(optimizer, state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = train_step(optimizer, state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    return pipeline_config(0).batch_size / statistics.median(times)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/chorales-16k"))
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    report = build_chorales(args.corpus, sample_rate=16000, limit=args.limit)
    if report.written:
        print(f"rendered {len(report.written)} chorales at {report.realtime_factor:.0f}x real time")
    index = build_index(args.corpus, get_layout("chorales"))
    rates = {}
    for workers in (0, 2):
        rates[str(workers)] = round(time_pipeline(index, workers, args.batches), 1)
        print(f"pipeline, {workers} workers: {rates[str(workers)]} segments/s", flush=True)
    step = round(time_step(index, args.steps), 2)
    print(f"tiny model train step: {step} segments/s")
    result = {"segments_per_s": rates, "step_segments_per_s": step,
              "ratio": round(max(rates.values()) / step, 1), "corpus_tracks": len(index.tracks)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
