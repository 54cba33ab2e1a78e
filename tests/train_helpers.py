"""A tiny experiment over a generated JaCappella-layout fixture, shared by the training tests."""

from pathlib import Path

from fixtures import make_jacappella

from sepjax.models import get_config
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

STEMS = ("soprano", "alto", "tenor", "bass")


def tiny_experiment(tmp_path: Path, **train) -> ExperimentConfig:
    root = tmp_path / "jc"
    if not root.exists():
        make_jacappella(root)
    return ExperimentConfig(
        name="test",
        model=get_config("dual-path-sepreformer-tiny", num_stems=4),
        data=DataConfig(root=str(root), layout="jacappella", stems=STEMS, sample_rate=8000, segment_seconds=0.5,
                        batch_size=2, valid_split="test", valid_tracks=1),
        optim=OptimConfig(lr=1e-3, warmup_steps=2),
        train=TrainConfig(**{"steps": 4, "run_dir": str(tmp_path / "run"), "checkpoint_every": 2, "valid_every": 2,
                             "chunk_seconds": 0.5, **train}),
        log=LogConfig(log_every=1, audio_every=2, progress=False),
    )
