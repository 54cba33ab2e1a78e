"""Separation quality against training time: train an experiment, scoring the test chorales along the way.

    python benchmarks/quality.py experiments/demo_recipe.py --out runs/quality-demo [--evaluations 4] \
        [-- --train.steps 3000 --optim.lr 2e-3 ...]

Flags after `--` go to the experiment (as `sepjax train` takes them). The run trains `train.steps` steps into
OUT/run and, at `--evaluations` evenly spaced step counts (the last is the final step), separates every test
chorale of the corpus with the weights validation uses (the EMA when there is one) and scores them.
Evaluation time is not counted as training time. Writes OUT/quality.json and OUT/quality.png (SI-SDRi per
voice against training minutes).

The last line is JSON: {"experiment", "steps", "minutes_trained", "si_sdri": {voice: mean dB}, "curve": [...]}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.inference.evaluate import evaluate
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array
from sepjax.train.cli import load_experiment, parse
from sepjax.train.host_memory import keep_host_memory
from sepjax.train.loop import replace, train


def score(model, config, index, stems, out_dir: Path, input_std: float) -> dict:
    """Mean SI-SDRi per voice on the test split, with chunked inference at the validation chunk length, the
    inputs scaled to the level of the training mixtures (`input_std`) as the run's bundle does."""
    inference = InferenceConfig(chunk=int(config.train.chunk_seconds * config.data.sample_rate), overlap=0.5,
                                batch_size=4)
    run = BatchedModel(model, inference.batch_size, input_std=input_std)
    summary = evaluate(lambda mixture, track: separate_array(run, mixture, inference), index, "test", stems,
                       config.data.sample_rate, config.data.channels, out_dir, overwrite=True, progress=False)
    return {stem: values["si_sdri"]["mean"] for stem, values in summary["per_stem"].items()}


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for stem in curve[0]["si_sdri"]:
        ax.plot([p["minutes"] for p in curve], [p["si_sdri"][stem] for p in curve], marker="o", label=stem)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("SI-SDRi on the test chorales (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--evaluations", type=int, default=4, help="test-set evaluations, evenly spaced in steps")
    args, rest = p.parse_known_args()
    rest = rest[1:] if rest[:1] == ["--"] else rest
    experiment = load_experiment(args.experiment)
    config = parse(experiment.CONFIG, rest)
    config = replace(config, train={"run_dir": str(args.out / "run")}, log={"progress": False})
    keep_host_memory()
    index = build_index(config.data.root, get_layout(config.data.layout, stems=config.data.stems))
    stems = get_layout(config.data.layout, stems=config.data.stems).stems
    per_call = config.train.steps_per_call
    marks = sorted({max(per_call, round(config.train.steps * (i + 1) / args.evaluations / per_call) * per_call)
                    for i in range(args.evaluations)} | {config.train.steps})
    curve: list[dict] = []
    paused = [0.0]
    start = time.perf_counter()

    def on_step(step, metrics, result):
        if step not in marks:
            return
        pause = time.perf_counter()
        minutes = (pause - start - paused[0]) / 60
        state = result.state
        model = jax.device_get(state.ema if state.ema is not None else state.model)
        voices = score(model, config, index, stems, args.out / f"evaluation-{step}", result.input_std)
        curve.append({"step": step, "minutes": minutes, "si_sdri": voices})
        print(f"step {step} ({minutes:.1f} min): " + ", ".join(f"{s} {v:+.2f}" for s, v in voices.items()),
              flush=True)
        paused[0] += time.perf_counter() - pause

    train(config, on_step=on_step)
    result = {"experiment": config.name, "steps": config.train.steps, "minutes_trained": curve[-1]["minutes"],
              "si_sdri": curve[-1]["si_sdri"], "min_si_sdri": float(np.min(list(curve[-1]["si_sdri"].values()))),
              "curve": curve}
    (args.out / "quality.json").write_text(json.dumps(result, indent=2))
    plot(curve, args.out / "quality.png", config.name)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
