"""Two-speaker separation on wsj0-2mix / Libri2Mix at 8 kHz with permutation-invariant training.

Data: ROOT/{tr,cv,tt}/{mix,s1,s2}/<utterance>.wav at 8 kHz (the min or max version).
Model: the tutorial's dual-path SepReformer, mono, 2 outputs; the loss matches estimates to
speakers by the best permutation before scoring, since speaker order is arbitrary.

    python experiments/wsj0_2mix_sepreformer.py --data.root /data/wsj0-2mix/8k/min
"""

from sepjax.losses import CompositeLossConfig
from sepjax.models import get_config
from sepjax.train.cli import run_experiment
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

CONFIG = ExperimentConfig(
    name="wsj0_2mix_sepreformer",
    model=get_config("dual-path-sepreformer", num_stems=2),
    data=DataConfig(root="data/wsj0-2mix", layout="2mix", sample_rate=8000, segment_seconds=4.0, batch_size=8,
                    valid_tracks=50, silence_db=-80.0, num_workers=4),
    optim=OptimConfig(lr=1e-3, warmup_steps=1000, schedule="plateau", ema_decay=0.999),
    train=TrainConfig(steps=200_000, run_dir="runs/wsj0_2mix_sepreformer", checkpoint_every=2000,
                      valid_every=5000, chunk_seconds=4.0),
    log=LogConfig(log_every=50, audio_every=2000),
    loss=CompositeLossConfig(permutation_invariant=True, stft_weight=0.0),
)

if __name__ == "__main__":
    run_experiment(CONFIG, description=__doc__)
