"""Train the CPU-sized SepReformer on the embedded Bach-chorale corpus (soprano, alto, tenor, bass).

Data: the corpus rendered by `sepjax data chorales data/chorales --sample-rate 16000` (no download);
training reads it at 8 kHz, 2 s segments, with gain, remix and subset augmentation.
Model: the tutorial's dual-path SepReformer at dim 64 with one separation and one reconstruction block, 4 stems,
and an encoder of 128-sample kernels at stride 32 (16 ms frames every 4 ms) in chunks of 24 frames: at 8 kHz the
tutorial's K16 S8 frames are too short to resolve the voices' harmonics, and the longer frames also halve the
sequence, so a step takes about 0.6 of the K64 S16 encoder's. 4500 steps, sized for about 9 minutes on a 2-core
CPU (10 train steps per jitted call): the inner voices need about 4000 to reach +5 dB SI-SDRi on the test
chorales (docs/quality.md).

    python experiments/chorales_sepreformer.py [--train.steps 8000 --optim.lr 1e-3 ...]
    sepjax train experiments/chorales_sepreformer.py --train.steps 8000
"""

from sepjax.data.augment import AugmentConfig
from sepjax.models import get_config
from sepjax.train.cli import run_experiment
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

CONFIG = ExperimentConfig(
    name="chorales_sepreformer",
    model=get_config("dual-path-sepreformer-tiny", num_stems=4, dim=64, ff_dim=128, chunk_size=24,
                     encoder_kernel=128, encoder_stride=32, kernels="cpu_fast"),
    data=DataConfig(root="data/chorales", layout="chorales", sample_rate=8000, segment_seconds=2.0, batch_size=4,
                    valid_tracks=3, augment=AugmentConfig(gain_db=(-3.0, 3.0), remix_prob=0.3)),
    optim=OptimConfig(lr=2e-3, warmup_steps=100, schedule="cosine", ema_decay=0.99),
    train=TrainConfig(steps=4500, run_dir="runs/chorales_sepreformer", checkpoint_every=500, valid_every=500,
                      chunk_seconds=2.0, steps_per_call=10),
    log=LogConfig(log_every=20, audio_every=500),
)

if __name__ == "__main__":
    run_experiment(CONFIG, description=__doc__)
