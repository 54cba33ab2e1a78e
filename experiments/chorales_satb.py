"""The shipped chorale separator (`chorales-satb`): the tutorial's dual-path SepReformer at dim 128 on the embedded
Bach-chorale corpus (soprano, alto, tenor, bass) at 8 kHz.

Data: the corpus rendered by `sepjax data chorales data/chorales --sample-rate 16000`, read at 8 kHz in 2 s
segments with gain, remix and time-shift augmentation. Model: dim 128, 8 heads, feed-forward 256, an encoder of
128-sample kernels at stride 32 (16 ms frames every 4 ms: the frequency resolution that tells the voices'
harmonics apart, and a quarter of the frames of the tutorial's K16 S8), chunks of 24 frames, 2 separation and
2 reconstruction blocks. Sized for hours on a 2-core CPU.

    python benchmarks/quality.py experiments/chorales_satb.py --out runs/chorales-satb
    sepjax train experiments/chorales_satb.py [--train.steps 4000 ...]
"""

from sepjax.data.augment import AugmentConfig
from sepjax.models import get_config
from sepjax.train.cli import run_experiment
from sepjax.train.config import DataConfig, ExperimentConfig, LogConfig, OptimConfig, TrainConfig

CONFIG = ExperimentConfig(
    name="chorales_satb",
    model=get_config("dual-path-sepreformer-tiny", num_stems=4, dim=128, heads=8, ff_dim=256, chunk_size=24,
                     encoder_kernel=128, encoder_stride=32, num_sep_blocks=2, num_rec_blocks=2, kernels="cpu_fast"),
    data=DataConfig(root="data/chorales", layout="chorales", sample_rate=8000, segment_seconds=2.0, batch_size=4,
                    valid_tracks=3, augment=AugmentConfig(gain_db=(-6.0, 6.0), remix_prob=0.3,
                                                          max_shift_seconds=0.5)),
    optim=OptimConfig(lr=1.5e-3, warmup_steps=200, schedule="cosine", ema_decay=0.995),
    train=TrainConfig(steps=6000, run_dir="runs/chorales_satb", checkpoint_every=250, valid_every=500,
                      chunk_seconds=2.0, steps_per_call=10),
    log=LogConfig(log_every=50, audio_every=500),
)

if __name__ == "__main__":
    run_experiment(CONFIG, description=__doc__)
