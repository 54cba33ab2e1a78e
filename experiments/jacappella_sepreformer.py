"""The tutorial's SepReformer on JaCappella with the SepACap-style recipe, for a GPU.

Data: JaCappella at ROOT/<subset>/<song>/{lead_vocal,soprano,alto,tenor,bass,vocal_percussion,mixture}.wav
(48 kHz mono) with test_song_list_for_vocal_ensemble_separation.txt at ROOT; read at 24 kHz
(pass --data.sample-rate 48000 for the full rate). Missing parts are masked zeros.
Model: the tutorial's dual-path SepReformer (256/8/1024/64, 2 + 2 blocks, K16 S8), 6 stems.
Recipe: power-set subset mixing (silent targets scored by the bounded energy penalty), cross-song
remixing, gain, bf16 compute with float32 parameters, EMA of the weights.

    python experiments/jacappella_sepreformer.py --data.root /data/jacappella
"""

from sepjax.data.augment import AugmentConfig
from sepjax.data.layouts import JACAPPELLA_STEMS
from sepjax.models import get_config
from sepjax.train.cli import run_experiment
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

CONFIG = ExperimentConfig(
    name="jacappella_sepreformer",
    model=get_config("dual-path-sepreformer", num_stems=len(JACAPPELLA_STEMS), dtype="bfloat16", remat=True),
    data=DataConfig(root="data/jacappella", layout="jacappella", sample_rate=24000, segment_seconds=4.0,
                    batch_size=8, valid_tracks=8, num_workers=4,
                    augment=AugmentConfig(gain_db=(-6.0, 3.0), remix_prob=0.5, subset_prob=0.5, max_shift_seconds=0.5)),
    optim=OptimConfig(lr=3e-4, warmup_steps=2000, ema_decay=0.999),
    train=TrainConfig(steps=200_000, run_dir="runs/jacappella_sepreformer", checkpoint_every=2000, valid_every=5000,
                      keep_last=3, chunk_seconds=4.0),
    log=LogConfig(log_every=50, audio_every=2000),
)

if __name__ == "__main__":
    run_experiment(CONFIG, description=__doc__)
