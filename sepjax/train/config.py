"""Experiment configuration: typed, frozen dataclasses, overridable from the command line (tyro).

    python experiments/chorales_sepreformer.py --train.steps 2000 --optim.lr 1e-3
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sepjax.data.augment import AugmentConfig
from sepjax.losses import CompositeLossConfig
from sepjax.models import DualPathConfig, SepReformerConfig


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/chorales"
    layout: str = "chorales"
    stems: tuple[str, ...] | None = None
    """Stem names to train on (default: the layout's own)."""
    sample_rate: int = 16000
    segment_seconds: float = 2.0
    batch_size: int = 8
    channels: int = 1
    train_split: str = "train"
    valid_split: str = "valid"
    valid_tracks: int = 4
    """Validation runs full-track inference on at most this many tracks."""
    silence_db: float = -60.0
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 1e-2
    clip_norm: float = 1.0
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    """Cosine decays to lr·min_lr_ratio."""
    plateau_patience: int = 5
    """Reduce-on-plateau: validation rounds without improvement before the lr is halved."""
    grad_accum: int = 1
    ema_decay: float = 0.0
    """0 disables the EMA of the weights."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    seed: int = 0
    run_dir: str = "runs/experiment"
    resume: bool = False
    checkpoint_every: int = 200
    keep_last: int = 2
    valid_every: int = 200
    best_metric: Literal["si_sdr", "sdr"] = "si_sdr"
    max_nonfinite: int = 10
    """Stop after this many non-finite steps in a row."""
    chunk_seconds: float = 2.0
    """Validation inference chunk length."""
    export_bundle: bool = True
    steps_per_call: int = 1
    """Train steps per jitted call (`train_steps`): fewer dispatches and host syncs; on the CPU, XLA's scratch
    memory is faulted in once per call instead of once per step. Every log/audio/validation/checkpoint
    interval must be a multiple of it."""


@dataclass(frozen=True)
class LogConfig:
    log_every: int = 10
    audio_every: int = 200
    progress: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    model: DualPathConfig | SepReformerConfig = field(default_factory=DualPathConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    loss: CompositeLossConfig = field(default_factory=CompositeLossConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Fields a resumed run may change without being a different experiment.
RESUMABLE_CHANGES = {("train", "steps"), ("train", "resume"), ("train", "steps_per_call"), ("log", "progress")}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted paths whose values differ, ignoring RESUMABLE_CHANGES."""
    diffs = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), (*path, k))
        elif a != b and path not in RESUMABLE_CHANGES:
            diffs.append(f"{'.'.join(path)}: {a!r} → {b!r}")

    walk(saved, current, ())
    return diffs
