"""How a chorale separator holds up on audio unlike its training data: other renders and other levels.

    python benchmarks/robustness.py chorales-satb --corpus numpy=data/chorales \
        --corpus numpy-seed1=data/chorales-seed1 --corpus fluidsynth=data/chorales-fluidsynth --gains-db -20 0 6

Each `--corpus NAME=ROOT` is the chorale corpus rendered some way (`sepjax data chorales ROOT [--seed S]
[--renderer fluidsynth]`: another seed draws other tempos and voices for the same chorales, fluidsynth uses
General MIDI choir patches). The bundle separates every test chorale of each, at the mixture's own level; the
first corpus is also scored with the mixture scaled by each `--gains-db` (the estimates scaled back). Prints a
table of mean SI-SDRi per voice; the last line is JSON: {"bundle", "rows": [{"corpus", "gain_db", "si_sdri"}]}.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from sepjax.data.index import build_index
from sepjax.data.layouts import get_layout
from sepjax.inference.bundle import load_bundle
from sepjax.inference.evaluate import evaluate
from sepjax.inference.pretrained import resolve_bundle
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array


def score(bundle, root: Path, gain_db: float) -> dict[str, float]:
    chunk = int((bundle.chunk_seconds or 2.0) * bundle.sample_rate)
    inference = InferenceConfig(chunk=chunk, overlap=0.5, batch_size=4)
    run = BatchedModel(bundle.model, inference.batch_size, input_std=bundle.input_std)
    gain = 10 ** (gain_db / 20)

    def separate(mixture, track):
        return separate_array(run, mixture * gain, inference) / gain

    index = build_index(root, get_layout("chorales"))
    with tempfile.TemporaryDirectory() as out:
        summary = evaluate(separate, index, "test", bundle.stem_names, bundle.sample_rate, 1, out, figure_tracks=0,
                           progress=False)
    return {stem: v["si_sdri"]["mean"] for stem, v in summary["per_stem"].items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="a bundle folder or a shipped model's name")
    p.add_argument("--corpus", action="append", required=True, metavar="NAME=ROOT")
    p.add_argument("--gains-db", type=float, nargs="*", default=[-20.0, 6.0])
    args = p.parse_args()
    corpora = []
    for item in args.corpus:
        name, sep, root = item.partition("=")
        if not sep or not Path(root).is_dir():
            p.error(f"--corpus {item!r}: expected NAME=ROOT with ROOT a rendered chorale corpus")
        corpora.append((name, Path(root)))
    bundle = load_bundle(resolve_bundle(args.bundle))
    runs = [(name, root, 0.0) for name, root in corpora]
    runs += [(corpora[0][0], corpora[0][1], g) for g in args.gains_db if g != 0.0]
    rows = []
    print(f"{'corpus':<16}{'gain dB':>8}" + "".join(f"{s:>10}" for s in bundle.stem_names))
    for name, root, gain in runs:
        values = score(bundle, root, gain)
        rows.append({"corpus": name, "gain_db": gain, "si_sdri": values})
        print(f"{name:<16}{gain:>+8.0f}" + "".join(f"{values[s]:>+10.2f}" for s in bundle.stem_names), flush=True)
    print(json.dumps({"bundle": args.bundle, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
