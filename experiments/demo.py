"""The main job (`make demo`): from nothing to four separated Bach voices on a CPU (about 12 minutes, plus the
first rendering of the corpus, about 2 minutes).

1. Renders the embedded chorale corpus (data/chorales, 16 kHz; songs already there are kept).
2. Trains the CPU-sized SepReformer (experiments/chorales_sepreformer.py) for 4500 steps (about 10 minutes).
3. Evaluates it on the held-out test chorales with chunked inference, and the shipped `chorales-satb` model on
   the same chorales, and prints their per-voice SI-SDRi tables side by side.
4. Separates one test chorale into soprano/alto/tenor/bass wav files with both models.
5. Prints where everything is, and the TensorBoard command to listen to it all.

    python experiments/demo.py [--chorales 120 --steps 1000]   (fewer chorales and steps: quicker, worse)
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from chorales_sepreformer import CONFIG  # noqa: E402

from sepjax.data.chorales import build_chorales  # noqa: E402
from sepjax.data.index import build_index  # noqa: E402
from sepjax.data.layouts import get_layout  # noqa: E402
from sepjax.inference.bundle import load_bundle  # noqa: E402
from sepjax.inference.evaluate import evaluate  # noqa: E402
from sepjax.inference.pretrained import shipped_bundles  # noqa: E402
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array  # noqa: E402
from sepjax.inference.separate_files import OutputOptions, separate_file  # noqa: E402
from sepjax.train.host_memory import keep_host_memory, relaunch_on_huge_pages  # noqa: E402
from sepjax.train.loop import replace, train  # noqa: E402

SHIPPED = "chorales-satb"


def folder_name(model_name: str) -> str:
    return model_name.replace(" ", "-")


def inference_config(bundle, chunk_seconds: float) -> InferenceConfig:
    return InferenceConfig(chunk=int((bundle.chunk_seconds or chunk_seconds) * bundle.sample_rate), overlap=0.5,
                           batch_size=4)


def evaluate_bundle(bundle, index, out: Path) -> dict:
    """Score `bundle` on the test chorales at its own sample rate, with chunked inference."""
    inference = inference_config(bundle, 2.0)
    run = BatchedModel(bundle.model, inference.batch_size, input_std=bundle.input_std)
    return evaluate(lambda mixture, track: separate_array(run, mixture, inference), index, "test",
                    bundle.stem_names, bundle.sample_rate, 1, out, progress=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/chorales"))
    p.add_argument("--chorales", type=int, default=None, help="render only the first N chorales (default: all)")
    p.add_argument("--steps", type=int, default=CONFIG.train.steps)
    p.add_argument("--out", type=Path, default=Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    args = p.parse_args()
    relaunch_on_huge_pages()
    keep_host_memory()
    start = time.perf_counter()

    print(f"[1/4] rendering {args.chorales or 'all'} chorales into {args.corpus} ...", flush=True)
    report = build_chorales(args.corpus, sample_rate=16000, limit=args.chorales)
    rate = f" ({report.realtime_factor:.0f}x real time)" if report.written else ""
    print(f"      {len(report.written)} rendered{rate}, {len(report.present)} already there, "
          f"{len(report.skipped)} skipped", flush=True)

    print(f"[2/4] training {CONFIG.name} for {args.steps} steps ...", flush=True)
    config = replace(CONFIG, data={"root": str(args.corpus)},
                     train={"steps": args.steps, "run_dir": str(args.out / "run")})
    trained = time.perf_counter()
    result = train(config)
    bundle = load_bundle(result.bundle)
    print(f"      trained in {(time.perf_counter() - trained) / 60:.1f} minutes (compiling and validation included)",
          flush=True)

    print("[3/4] evaluating the held-out test chorales ...", flush=True)
    index = build_index(args.corpus, get_layout("chorales"))
    models = {"from scratch": bundle}
    shipped = shipped_bundles().get(SHIPPED)
    if shipped is not None:
        models[SHIPPED] = load_bundle(shipped)
    summaries = {name: evaluate_bundle(b, index, args.out / "evaluation" / folder_name(name))
                 for name, b in models.items()}
    tracks = summaries["from scratch"]["tracks"]
    print(f"\n      SI-SDRi on {tracks} test chorales, mean (median), dB:")
    print("      " + f"{'voice':<10}" + "".join(f"{name:>22}" for name in summaries))
    for stem in bundle.stem_names:
        cells = [f"{s['per_stem'][stem]['si_sdri']['mean']:+.2f} ({s['per_stem'][stem]['si_sdri']['median']:+.2f})"
                 for s in summaries.values()]
        print("      " + f"{stem:<10}" + "".join(f"{c:>22}" for c in cells))
    if shipped is None:
        print(f"      (no shipped {SHIPPED} model in this installation to compare with)")

    print("\n[4/4] separating one test chorale ...", flush=True)
    track = index.split("test")[0]
    mixture_path = Path(track.stems["soprano"].path).with_name("mixture.wav")
    written = {}
    for name, b in models.items():
        inference = inference_config(b, config.train.chunk_seconds)
        run = BatchedModel(b.model, inference.batch_size, input_std=b.input_std)
        written[name] = separate_file(run, 1, 1, b.sample_rate, b.stem_names,
                                      mixture_path, Path(track.track_id.replace("/", "_")), inference,
                                      OutputOptions(args.out / "separated" / folder_name(name)))

    minutes = (time.perf_counter() - start) / 60
    print(f"\nDone in {minutes:.1f} minutes. Everything is in {args.out}/:")
    print("  run/            checkpoints, config.json, TensorBoard logs, bundle/ (the trained model)")
    print("  evaluation/     per model: metrics.csv per chorale and voice, summary.json, summary.md, figures/")
    for name, folder in written.items():
        print(f"  separated/{folder_name(name)}/{folder.name}/{{{','.join(bundle.stem_names)}}}.wav  ({name}, from "
              f"{mixture_path})")
    print("\nListen to the mixture, each voice and each estimate, and watch the curves:")
    print(f"  .venv/bin/tensorboard --logdir {args.out / 'run' / 'tensorboard'}")
    print(f"Separate your own files:\n  .venv/bin/sepjax separate {result.bundle} song.wav --out separated/")
    worst = min(v["si_sdri"]["mean"] for v in summaries["from scratch"]["per_stem"].values())
    return 0 if worst > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
