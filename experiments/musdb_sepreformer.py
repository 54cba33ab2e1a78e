"""Stereo SepReformer on MUSDB18-HQ: vocals, drums, bass, other at 44.1 kHz.

Data: ROOT/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav (or MUSDB18 .stem.mp4 files with
`pip install -e .[musdb]` and ffmpeg); the standard 14-track validation subset of train is held out.
Model: the tutorial's dual-path SepReformer, stereo in and out, 4 stems.

    python experiments/musdb_sepreformer.py --data.root /data/musdb18hq
"""

from sepjax.data.augment import AugmentConfig
from sepjax.data.layouts import MUSDB_STEMS
from sepjax.models import get_config
from sepjax.train.cli import run_experiment
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

CONFIG = ExperimentConfig(
    name="musdb_sepreformer",
    model=get_config("dual-path-sepreformer", num_stems=len(MUSDB_STEMS), in_channels=2, out_channels=2,
                     dtype="bfloat16", remat=True),
    data=DataConfig(root="data/musdb18hq", layout="musdb", sample_rate=44100, segment_seconds=3.0, channels=2,
                    batch_size=8, valid_tracks=14, num_workers=4,
                    augment=AugmentConfig(gain_db=(-3.0, 3.0), remix_prob=0.5, channel_swap_prob=0.5,
                                          polarity_flip_prob=0.5)),
    optim=OptimConfig(lr=3e-4, warmup_steps=2000, ema_decay=0.999),
    train=TrainConfig(steps=300_000, run_dir="runs/musdb_sepreformer", checkpoint_every=2000, valid_every=10_000,
                      best_metric="sdr", chunk_seconds=3.0),
    log=LogConfig(log_every=50, audio_every=2000),
)

if __name__ == "__main__":
    run_experiment(CONFIG, description=__doc__)
