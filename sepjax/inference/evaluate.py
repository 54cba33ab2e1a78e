"""Evaluate separation over a dataset split: per-track CSV, JSON summary, Markdown table, optional TensorBoard.

The mixture of each track is the sum of the model's stems that the track has (as in training);
missing stems are not scored. In a speaker layout (2mix) the stems have no order or names: the model's
outputs are scored against the layout's speakers in their best permutation, whatever the model calls them.
Estimates come from any `separate(mixture) → stems` function,
normally the chunked inference core around a bundle's model.
"""

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sepjax.data.index import Track, TrackIndex, load_track
from sepjax.data.layouts import SPEAKER_LAYOUTS
from sepjax.errors import InputError, OutputExistsError
from sepjax.figures import save_png, spectrogram_figure
from sepjax.files import write_text_atomic
from sepjax.metrics import METRIC_NAMES, aggregate, best_order, track_metrics

SeparateFn = Callable[[np.ndarray, Track], np.ndarray]
"""(mixture (channels, T), track) → estimates (stems, channels, T)."""


def markdown_table(summary: dict, metrics: tuple[str, ...] = ("sdr", "bss_sdr_v4", "si_sdr", "si_sdri")) -> str:
    header = "| stem | tracks | " + " | ".join(f"{m} mean | {m} median" for m in metrics) + " |"
    lines = [header, "|" + "---|" * (2 + 2 * len(metrics))]
    for stem, values in summary.items():
        cells = [f"{values[m]['mean']:.2f} | {values[m]['median']:.2f}" for m in metrics]
        lines.append(f"| {stem} | {values[metrics[0]]['tracks']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_name(track_id: str) -> str:
    """A file name for a track's figures that stays inside the output folder whatever the id holds."""
    return "track_" + re.sub(r"[^A-Za-z0-9_-]", "_", track_id)


def evaluate(separate: SeparateFn, index: TrackIndex, split: str, stem_names: tuple[str, ...], sample_rate: int,
             channels: int, out_dir: str | Path, *, overwrite: bool = False, tensorboard_tracks: int = 0,
             figure_tracks: int = 1, progress: bool = True) -> dict:
    """Separate and score every track of `split`; write metrics.csv, summary.json and summary.md to `out_dir`,
    and spectrogram PNGs (target next to estimate) of the first `figure_tracks` tracks to `out_dir/figures/`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir} is not empty; pass --overwrite to replace its results")
    tracks = index.split(split)
    if not tracks:
        raise InputError(f"{index.root}: split {split!r} has no tracks (have {index.splits()})")
    speakers = index.layout in SPEAKER_LAYOUTS
    if speakers:
        if len(stem_names) != len(index.stems):
            raise InputError(f"a model with {len(stem_names)} outputs cannot separate the {len(index.stems)} "
                             f"speakers of layout {index.layout!r}")
        stem_names = index.stems
    unknown = [s for s in stem_names if s not in index.stems]
    if unknown:
        raise InputError(f"model stems {unknown} are not stems of layout {index.layout!r} {list(index.stems)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    logger = None
    if tensorboard_tracks:
        from sepjax.tensorboard_log import RunLogger

        logger = RunLogger(out_dir / "tensorboard")
    rows, failures = [], []
    for i, track in enumerate(tqdm(tracks, desc=f"evaluating {split}", unit="track", disable=not progress)):
        try:
            targets, present = load_track(track, stem_names, sample_rate, channels)
        except (OSError, ValueError) as err:
            failures.append(f"{track.track_id}: {err}")
            continue
        mixture = targets[present].sum(axis=0)
        estimates = separate(mixture, track)
        if not np.all(np.isfinite(estimates)):
            failures.append(f"{track.track_id}: the model's output holds NaN or infinite samples (are the bundle's "
                            f"weights finite?)")
            continue
        if speakers and np.all(present):
            estimates = estimates[best_order(estimates, targets)]
        values = track_metrics(estimates[present], targets[present], mixture, sample_rate)
        for j, stem in enumerate(np.array(stem_names)[present]):
            rows.append({"track": track.track_id, "stem": str(stem), **{m: float(values[m][j]) for m in METRIC_NAMES}})
        names = [s for s, p in zip(stem_names, present, strict=True) if p]
        if logger is not None and i < tensorboard_tracks:
            logger.separation_audio(i, mixture, targets[present], estimates[present], names, sample_rate,
                                    prefix=f"eval/{track.track_id}/")
            logger.spectrograms(i, targets[present], estimates[present], names, sample_rate,
                                prefix=f"eval/{track.track_id}/")
        if i < figure_tracks:
            (out_dir / "figures").mkdir(exist_ok=True)
            for name, target, estimate in zip(names, targets[present], estimates[present], strict=True):
                save_png(spectrogram_figure(target, estimate, sample_rate, f"{track.track_id} {name}"),
                         out_dir / "figures" / f"{figure_name(track.track_id)}_{name}.png")
    if logger is not None:
        logger.close()
    summary = aggregate(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["track", "stem", *METRIC_NAMES])
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out_dir / "metrics.csv", buffer.getvalue())
    result = {"split": split, "tracks": len(tracks), "failed": failures, "sample_rate": sample_rate,
              "per_stem": summary}
    write_text_atomic(out_dir / "summary.json", json.dumps(result, indent=2))
    write_text_atomic(out_dir / "summary.md", markdown_table(summary))
    return result
