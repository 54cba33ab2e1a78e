"""Training: state, the jitted step (one or several per call), the overfit helper."""

from sepjax.train.optim import make_optimizer
from sepjax.train.overfit import OverfitHistory, overfit_one_batch
from sepjax.train.state import Batch, TrainState
from sepjax.train.step import batch_loss, train_step, train_steps

__all__ = ["Batch", "OverfitHistory", "TrainState", "batch_loss", "make_optimizer",
           "overfit_one_batch", "train_step", "train_steps"]
