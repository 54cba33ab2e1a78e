"""Experiment configuration: typed, frozen dataclasses, overridable from the command line (tyro).

    python experiments/chorales_sepreformer.py --train.steps 2000 --optim.lr 1e-3
"""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from sepjax.data.augment import AugmentConfig
from sepjax.errors import InputError
from sepjax.losses import CompositeLossConfig
from sepjax.models import DualPathConfig, SepReformerConfig


@dataclass(frozen=True)
class DataConfig:
    root: str = "data/chorales"
    layout: str = "chorales"
    extra_train_roots: tuple[str, ...] = ()
    """More copies of the data in the same layout (the corpus rendered by another synthesiser, say) whose training
    splits join `root`'s; validation and every other split read `root` alone."""
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
    init_from: str | None = None
    """Start a new run from these weights: a bundle folder, a shipped model's name or an official SepReformer
    checkpoint (.pth, .safetensors, .npz) (ignored when resuming)."""
    init_partial: bool = False
    """With init_from: load the arrays whose path and shape match and report the rest, instead of refusing."""
    freeze: tuple[str, ...] = ()
    """Regular expressions over parameter paths (e.g. '^\\.encoder\\.'): matching parameters are not updated."""
    steps_per_call: int = 1
    """Train steps per jitted call (`train_steps`): fewer dispatches and host syncs; on the CPU, XLA's scratch
    memory is faulted in once per call instead of once per step. Every log/audio/validation/checkpoint
    interval must be a multiple of it."""
    compile_cache: str = "user"
    """The folder of JAX's persistent compilation cache for `sepjax train` and experiment scripts, so that a
    rerun or resumed run of the same experiment loads its compiled steps instead of compiling them again.
    'user': sepjax/jax in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache); '': no cache. The
    JAX_COMPILATION_CACHE_DIR environment variable takes precedence."""


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


class ConfigError(InputError):
    """An experiment that cannot start; raised before any compute and before anything is written."""


def _at_least(minimum):
    return lambda v: v >= minimum, f"must be at least {minimum}"


_POSITIVE = (lambda v: v > 0 and math.isfinite(v), "must be a positive number")
_NON_NEGATIVE = (lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0")
_FRACTION = (lambda v: 0 <= v <= 1, "must be in [0, 1]")

# (section, field) → (test, what the value must be). Each interval, rate and size the loop divides by, counts
# with or sizes an array by.
FIELD_RULES = {
    ("data", "sample_rate"): _at_least(1),
    ("data", "segment_seconds"): _POSITIVE,
    ("data", "batch_size"): _at_least(1),
    ("data", "channels"): (lambda v: v in (1, 2), "must be 1 or 2"),
    ("data", "valid_tracks"): _at_least(0),
    ("data", "num_workers"): _at_least(0),
    ("optim", "lr"): _POSITIVE,
    ("optim", "weight_decay"): _NON_NEGATIVE,
    ("optim", "clip_norm"): _POSITIVE,
    ("optim", "warmup_steps"): _at_least(0),
    ("optim", "min_lr_ratio"): _FRACTION,
    ("optim", "plateau_patience"): _at_least(1),
    ("optim", "grad_accum"): _at_least(1),
    ("optim", "ema_decay"): (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("train", "steps"): _at_least(1),
    ("train", "checkpoint_every"): _at_least(1),
    ("train", "keep_last"): _at_least(1),
    ("train", "valid_every"): _at_least(1),
    ("train", "max_nonfinite"): _at_least(1),
    ("train", "chunk_seconds"): _POSITIVE,
    ("train", "steps_per_call"): _at_least(1),
    ("log", "log_every"): _at_least(1),
    ("log", "audio_every"): _at_least(1),
}


def config_problems(config: "ExperimentConfig") -> list[str]:
    """Every value the training loop cannot run with, as `section.field=value: why`."""
    problems = []
    for (section, name), (ok, why) in FIELD_RULES.items():
        value = getattr(getattr(config, section), name)
        if not ok(value):
            problems.append(f"{section}.{name}={value!r}: {why}")
    data = config.data
    if not problems and round(data.segment_seconds * data.sample_rate) < 1:
        problems.append(f"data.segment_seconds={data.segment_seconds!r}: under one sample at {data.sample_rate} Hz")
    if not problems and int(config.train.chunk_seconds * data.sample_rate) < 1:
        problems.append(f"train.chunk_seconds={config.train.chunk_seconds!r}: under one sample at "
                        f"{data.sample_rate} Hz")
    if data.stems is not None and (not data.stems or len(set(data.stems)) != len(data.stems)):
        problems.append(f"data.stems={list(data.stems)!r}: must be distinct names, at least one")
    return problems


def check_config(config: "ExperimentConfig") -> None:
    problems = config_problems(config)
    if problems:
        raise ConfigError("the experiment cannot run:\n  " + "\n  ".join(problems))


# Fields a resumed run may change without being a different experiment: how long it runs and how, and the paths
# that only locate the run and its data (a run folder or a data set moved to another disk still resumes).
# Changes that leave the run's function and data order as they were: the kernels, the attention implementation
# and the paper model's unrolling compute the same values (tests/test_kernels.py, tests/test_sepreformer.py), and
# the compilation cache only stores what XLA compiled.
RESUMABLE_CHANGES = {("train", "steps"), ("train", "resume"), ("train", "steps_per_call"), ("log", "progress"),
                     ("train", "run_dir"), ("data", "root"), ("data", "num_workers"), ("model", "kernels"),
                     ("model", "attention_impl"), ("model", "unroll"), ("train", "compile_cache")}


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
