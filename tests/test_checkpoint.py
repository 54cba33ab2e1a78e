"""Checkpoint retention: the latest K plus the best by validation metric; restore round trip."""

import equinox as eqx
import jax
import numpy as np

from sepjax.models import build_model, get_config
from sepjax.train import TrainState, make_optimizer
from sepjax.train.checkpoint import Checkpointer


def test_keeps_the_latest_and_the_best_and_restores(tmp_path):
    optimizer = make_optimizer()
    model = build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(1), ema=True)
    checkpoints = Checkpointer(tmp_path, keep_last=1, best_metric="valid_metric")
    for step, metric in [(1, 1.0), (2, 5.0), (3, 2.0), (4, 3.0)]:
        checkpoints.save(step, state, None, {"step": step}, {"valid_metric": metric})
        checkpoints.wait()
    assert checkpoints.all_steps() == [2, 4]
    assert checkpoints.best_step() == 2 and checkpoints.latest_step() == 4
    assert checkpoints.saved_config(2) == {"step": 2}
    template = TrainState.create(build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(9)),
                                 optimizer, key=jax.random.PRNGKey(9), ema=True)
    restored = checkpoints.restore(template, None, step=2)
    for a, b in zip(jax.tree.leaves(eqx.filter(state, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(restored, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
