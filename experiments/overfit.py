"""Overfit the tiny SepReformer on one batch of synthetic harmonic voices: the sanity check.

What it trains: `dual-path-sepreformer-tiny` (4 stems) on a single fixed batch of four synthetic
"voices" (harmonic tones with vibrato, each in its own register), mixed by summation.
Data: none needed; the batch is synthesised in memory.
Run:  python experiments/overfit.py [--steps 1000 --lr 3e-3 --out runs/overfit]
It prints loss and SI-SDR as it goes and writes TensorBoard scalars and audio (mixture,
each target, each estimate) at the start and the end: `tensorboard --logdir runs/overfit`.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from sepjax.data.synthetic import harmonic_stems
from sepjax.models import build_model, count_params, get_config
from sepjax.tensorboard_log import RunLogger
from sepjax.train import Batch, overfit_one_batch

STEM_NAMES = ["bass", "tenor", "alto", "soprano"]


@eqx.filter_jit
def separate_one(model, mixture):
    return model(mixture)


@dataclass(frozen=True)
class OverfitExperiment:
    model: str = "dual-path-sepreformer-tiny"
    examples: int = 2
    seconds: float = 1.0
    sample_rate: int = 8000
    steps: int = 1000
    lr: float = 3e-3
    log_every: int = 25
    seed: int = 0
    out: str = "runs/overfit"


def parse_args() -> OverfitExperiment:
    defaults = OverfitExperiment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return OverfitExperiment(**vars(parser.parse_args()))


def main(exp: OverfitExperiment) -> float:
    run_dir = Path(exp.out) / time.strftime("%Y%m%d-%H%M%S")
    config = get_config(exp.model, num_stems=len(STEM_NAMES))
    model = build_model(config, key=jax.random.PRNGKey(exp.seed))
    targets = harmonic_stems(exp.examples, len(STEM_NAMES), int(exp.seconds * exp.sample_rate),
                             exp.sample_rate, seed=exp.seed)
    batch = Batch.from_targets(targets)
    logger = RunLogger(run_dir)
    print(f"overfitting {exp.model} ({count_params(model):,} params) on one batch of "
          f"{exp.examples}×{exp.seconds:g}s at {exp.sample_rate} Hz for {exp.steps} steps")

    def log_audio(step: int, current_model) -> None:
        estimates = np.asarray(separate_one(current_model, batch.mixture[0]))
        logger.separation_audio(step, np.asarray(batch.mixture[0]), targets[0], estimates, STEM_NAMES,
                                exp.sample_rate)

    log_audio(0, model)
    start = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float], state) -> None:
        logger.scalars(step, metrics, prefix="train/")
        if step % exp.log_every == 0 or step == exp.steps - 1:
            print(f"step {step:4d}  loss {metrics['loss']:8.3f}  SI-SDR {metrics['si_sdr']:7.2f} dB  "
                  f"({time.perf_counter() - start:5.1f}s)", flush=True)

    model, history = overfit_one_batch(model, batch, steps=exp.steps, lr=exp.lr, seed=exp.seed,
                                       on_step=on_step)
    log_audio(exp.steps, model)
    logger.close()
    print(f"SI-SDR {history.si_sdr[0]:.2f} → {history.si_sdr[-1]:.2f} dB "
          f"(gain {history.gain_db:.1f} dB) in {time.perf_counter() - start:.0f}s")
    print(f"TensorBoard logs: {run_dir}\n  tensorboard --logdir {exp.out}")
    return history.gain_db


if __name__ == "__main__":
    main(parse_args())
