"""What test-time augmentation and random shifts cost and gain: a bundle on the test chorales, per option.

    python benchmarks/tta.py chorales-satb --corpus data/chorales [--tracks 12]

Separates the first `--tracks` test chorales with no augmentation (the yardstick), `--tta polarity` and
`--shifts 2`, in one run. Prints the seconds spent separating and mean SI-SDRi per voice for each; the last
line is JSON: {"bundle", "tracks", "rows": [{"option", "seconds", "time_ratio", "si_sdri", "gain_db"}]}.
"""

import argparse
import json
import sys
import tempfile
import time

import numpy as np

from sepjax.data.index import TrackIndex, build_index
from sepjax.data.layouts import get_layout
from sepjax.inference.bundle import load_bundle
from sepjax.inference.evaluate import evaluate
from sepjax.inference.pretrained import resolve_bundle
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array
from sepjax.inference.tta import TTAModel

OPTIONS = {"none": ((), 0), "tta polarity": (("polarity",), 0), "shifts 2": ((), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--corpus", default="data/chorales")
    p.add_argument("--tracks", type=int, default=12)
    args = p.parse_args()
    bundle = load_bundle(resolve_bundle(args.bundle))
    full = build_index(args.corpus, get_layout("chorales"))
    tests = full.split("test")[: args.tracks]
    index = TrackIndex(full.root, full.layout, full.stems, tests)
    run = BatchedModel(bundle.model, 4, input_std=bundle.input_std)
    chunk = int((bundle.chunk_seconds or 2.0) * bundle.sample_rate)
    rows = []
    for option, (transforms, shifts) in OPTIONS.items():
        config = InferenceConfig(chunk=chunk, overlap=0.5, batch_size=4, shifts=shifts)
        model_fn = TTAModel(run, transforms, 1, 1) if transforms else run
        separate_array(model_fn, np.zeros((1, chunk), np.float32), config)  # compile outside the timing
        spent = [0.0]  # separation only: the metrics cost the same for every option

        def separate(mixture, track, f=model_fn, c=config, spent=spent):
            start = time.perf_counter()
            estimates = separate_array(f, mixture, c)
            spent[0] += time.perf_counter() - start
            return estimates

        with tempfile.TemporaryDirectory() as out:
            summary = evaluate(separate, index, "test", bundle.stem_names, bundle.sample_rate, 1, out,
                               figure_tracks=0, progress=False)
        seconds = spent[0]
        rows.append({"option": option, "seconds": seconds,
                     "si_sdri": {s: v["si_sdri"]["mean"] for s, v in summary["per_stem"].items()}})
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["seconds"] / base["seconds"]
        row["gain_db"] = {s: row["si_sdri"][s] - base["si_sdri"][s] for s in row["si_sdri"]}
        print(f"{row['option']:<14} {row['seconds']:6.1f} s ({row['time_ratio']:.2f}x)  "
              + "  ".join(f"{s} {v:+.2f} ({row['gain_db'][s]:+.2f})" for s, v in row["si_sdri"].items()))
    print(json.dumps({"bundle": args.bundle, "tracks": len(tests), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
