"""Validation: full-track chunked inference on a few tracks, SI-SDR and SDR per stem."""

import equinox as eqx
import numpy as np

from sepjax.audio import to_channels
from sepjax.data.index import Track, load_track
from sepjax.inference.separate import BatchedModel, InferenceConfig, separate_array
from sepjax.metrics import sdr, si_sdr


def validate(model: eqx.Module, tracks: list[Track], stem_names: tuple[str, ...], sample_rate: int,
             inference: InferenceConfig, input_std: float = 1.0) -> tuple[dict[str, float], dict | None]:
    """Mean metrics over tracks: `<stem>/si_sdr`, `<stem>/sdr`, and overall `si_sdr`, `sdr`.

    `input_std` is the level of the training mixtures (`TrainResult.input_std`), which the normalised
    validation inputs are scaled to. Also returns the first track's mixture, targets and estimates for listening.
    """
    run = BatchedModel(model, inference.batch_size, input_std=input_std if inference.normalize != "none" else 1.0)
    in_channels, out_channels = model.config.in_channels, model.config.out_channels
    per_stem: dict[str, dict[str, list[float]]] = {s: {"si_sdr": [], "sdr": []} for s in stem_names}
    example = None
    for track in tracks:
        targets, present = load_track(track, stem_names, sample_rate, out_channels)
        mixture = targets[present].sum(axis=0)
        estimates = separate_array(run, to_channels(mixture, in_channels), inference)
        scores = {"si_sdr": np.asarray(si_sdr(estimates, targets)), "sdr": np.asarray(sdr(estimates, targets))}
        for j, stem in enumerate(stem_names):
            if present[j]:
                for name, values in scores.items():
                    per_stem[stem][name].append(float(values[j]))
        if example is None:
            example = {"mixture": mixture, "targets": targets, "estimates": estimates, "present": present,
                       "track": track.track_id}
    metrics = {f"{stem}/{name}": float(np.mean(v)) for stem, d in per_stem.items() for name, v in d.items() if v}
    for name in ("si_sdr", "sdr"):
        values = [metrics[f"{s}/{name}"] for s in stem_names if f"{s}/{name}" in metrics]
        metrics[name] = float(np.mean(values)) if values else float("nan")
    return metrics, example
