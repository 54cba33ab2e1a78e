"""Training throughput with the data pipeline attached, against the bare step; and restore time.

    python benchmarks/train_end_to_end.py [--corpus data/chorales-16k --steps 40]

Uses the chorale experiment's configuration (tiny model, 8 kHz, 2 s segments, batch 4, its steps per
jitted call). The bare step trains on one fixed batch already in memory; the end-to-end run pulls every
batch from the grain pipeline (reads, resampling, augmentation) and calls the step as `sepjax train` does
(`run_steps`, the next call's batches read while a call computes). data_overhead is
1 − (end-to-end steps/s ÷ bare steps/s); the target is under 5%. restore_s is the time to restore
the state and the iterator from the run's latest checkpoint. The last line is JSON.
"""

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax

from sepjax.data.chorales import build_chorales
from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.data.pipeline import PipelineConfig, training_dataset
from sepjax.models import build_model
from sepjax.train.checkpoint import Checkpointer
from sepjax.train.cli import load_experiment
from sepjax.train.distributed import data_mesh
from sepjax.train.loop import host_metrics, run_steps
from sepjax.train.optim import build_optimizer
from sepjax.train.state import TrainState

EXPERIMENT = Path(__file__).parents[1] / "experiments" / "chorales_sepreformer.py"


def timed_steps(optimizer, state, batches, steps: int, config):
    """Steps/s over calls of the experiment's steps_per_call (the median call), each call's successor's
    batches read while it computes, as `train` does."""
    per_call, mesh, times = config.train.steps_per_call, data_mesh(), []
    upcoming = [next(batches) for _ in range(per_call)]
    for _ in range(max(1, steps // per_call)):
        start = time.perf_counter()
        state, metrics = run_steps(optimizer, state, upcoming, mesh, config)
        upcoming = [next(batches) for _ in range(per_call)]
        host_metrics(metrics)
        times.append(time.perf_counter() - start)
    return state, per_call / statistics.median(times)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/chorales-16k"))
    p.add_argument("--limit", type=int, default=40)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    build_chorales(args.corpus, sample_rate=16000, limit=args.limit)
    config = load_experiment(EXPERIMENT).CONFIG
    index = build_index(args.corpus, get_layout("chorales"))
    pipeline = PipelineConfig(sample_rate=config.data.sample_rate, segment_seconds=config.data.segment_seconds,
                              batch_size=config.data.batch_size, augment=config.data.augment, shard_index=0,
                              shard_count=1)
    optimizer = build_optimizer(config.optim, 1000)
    state = TrainState.create(build_model(config.model, key=jax.random.PRNGKey(0)), optimizer,
                              key=jax.random.PRNGKey(1), ema=config.optim.ema_decay > 0)
    data = iter(training_dataset(index, pipeline))
    fixed = next(data)

    def same_batch():
        while True:
            yield fixed

    state, _ = timed_steps(optimizer, state, same_batch(), 1, config)  # compile
    rounds = {"bare": [], "pipeline": []}
    for _ in range(3):  # alternate, so both see the same machine load
        state, rate = timed_steps(optimizer, state, same_batch(), args.steps, config)
        rounds["bare"].append(rate)
        state, rate = timed_steps(optimizer, state, data, args.steps, config)
        rounds["pipeline"].append(rate)
    bare, piped = statistics.median(rounds["bare"]), statistics.median(rounds["pipeline"])
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = Checkpointer(Path(tmp) / "ckpt")
        checkpoints.save(int(state.step), state, data, dataclasses.asdict(config.train))
        checkpoints.wait()
        template = TrainState.create(build_model(config.model, key=jax.random.PRNGKey(0)), optimizer,
                                     key=jax.random.PRNGKey(1), ema=config.optim.ema_decay > 0)
        fresh = iter(training_dataset(index, pipeline))
        start = time.perf_counter()
        restored = checkpoints.restore(template, fresh)
        jax.block_until_ready(restored)
        restore_s = time.perf_counter() - start
        checkpoints.close()
    batch = config.data.batch_size
    print(f"bare step: {bare:.2f} steps/s ({bare * batch:.1f} segments/s); with the pipeline: {piped:.2f} steps/s "
          f"({piped * batch:.1f} segments/s); restore {restore_s:.2f} s")
    result = {"bare_steps_per_s": round(bare, 3), "pipeline_steps_per_s": round(piped, 3),
              "bare_segments_per_s": round(bare * batch, 2), "pipeline_segments_per_s": round(piped * batch, 2),
              "data_overhead": round(1 - piped / bare, 4), "restore_s": round(restore_s, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
