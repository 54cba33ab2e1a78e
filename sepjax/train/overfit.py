"""Overfit one fixed batch: the sanity check every architecture change should pass."""

from collections.abc import Callable
from dataclasses import dataclass, field

import equinox as eqx
import jax

from sepjax.losses import CompositeLossConfig
from sepjax.train.optim import make_optimizer
from sepjax.train.state import Batch, TrainState
from sepjax.train.step import train_step


@dataclass
class OverfitHistory:
    """Per-step loss and mean SI-SDR (dB, over active stems) before each update."""

    loss: list[float] = field(default_factory=list)
    si_sdr: list[float] = field(default_factory=list)

    @property
    def gain_db(self) -> float:
        """Best SI-SDR reached minus the SI-SDR at the start."""
        return max(self.si_sdr) - self.si_sdr[0]


def overfit_one_batch(
    model: eqx.Module, batch: Batch, *, steps: int, lr: float = 3e-4, seed: int = 0,
    loss_config: CompositeLossConfig = CompositeLossConfig(),
    on_step: Callable[[int, dict[str, float], TrainState], None] | None = None,
) -> tuple[eqx.Module, OverfitHistory]:
    """Train on `batch` for `steps` AdamW steps; `on_step(step, metrics, state)` after each."""
    optimizer = make_optimizer(lr)
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(seed))
    history = OverfitHistory()
    for i in range(steps):
        state, metrics = train_step(optimizer, state, batch, loss_config)
        scalars = {k: float(v) for k, v in metrics.items()}
        history.loss.append(scalars["loss"])
        history.si_sdr.append(scalars["si_sdr"])
        if on_step is not None:
            on_step(i, scalars, state)
    return state.model, history
