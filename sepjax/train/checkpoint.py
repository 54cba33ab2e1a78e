"""orbax checkpoints of a training run: the state's arrays, the grain iterator state and the config.

Saves are asynchronous and atomic (orbax writes a temporary directory and renames it), so a crash
or a full disk mid-save leaves the previous checkpoint intact. The latest `keep_last` checkpoints
are kept, plus the best one by a validation metric.
"""

import shutil
from pathlib import Path

import equinox as eqx
import grain
import jax
import orbax.checkpoint as ocp

from sepjax.errors import UserError
from sepjax.train.state import TrainState


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be written or read; the message names the directory."""


def state_bytes(state: TrainState) -> int:
    return sum(x.nbytes for x in jax.tree.leaves(eqx.filter(state, eqx.is_array)))


def check_disk_space(directory: Path, state: TrainState, copies: int) -> None:
    """Refuse to start when the disk cannot hold `copies` checkpoints plus one being written."""
    existing = next(p for p in (directory, *directory.absolute().parents) if p.exists())
    needed = state_bytes(state) * (copies + 1)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise CheckpointError(f"{directory}: {free / 2**20:.0f} MiB free, checkpoints need about "
                              f"{needed / 2**20:.0f} MiB; free some space or lower --train.keep-last")


class Checkpointer:
    def __init__(self, directory: str | Path, *, keep_last: int = 2, best_metric: str | None = None):
        self.directory = Path(directory).absolute()
        policies = [ocp.checkpoint_managers.LatestN(keep_last)]
        best_fn = None
        if best_metric is not None:
            def best_fn(metrics):
                return metrics[best_metric]

            # BestN sorts ascending and keeps the last n: the highest metric.
            policies.append(ocp.checkpoint_managers.BestN(get_metric_fn=best_fn, reverse=False, n=1,
                                                          keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            best_fn=best_fn, best_mode="max", enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: TrainState, data_iterator, config: dict,
             metrics: dict[str, float] | None = None) -> None:
        args = {"state": ocp.args.StandardSave(eqx.filter(state, eqx.is_array)),
                "config": ocp.args.JsonSave(config)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        try:
            # Also raises what an earlier asynchronous save of this manager raised in its background thread.
            self.manager.save(step, args=ocp.args.Composite(**args), metrics=metrics, force=True)
        except (OSError, ValueError) as err:  # OSError from Python's writes, ValueError from tensorstore's
            raise self._failed(f"saving step {step}", err) from err

    def restore(self, template: TrainState, data_iterator, step: int | None = None) -> TrainState:
        """The state at `step` (default: latest), shaped like `template`; the iterator is restored in place."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restore")
        arrays, static = eqx.partition(template, eqx.is_array)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, arrays)
        args = {"state": ocp.args.StandardRestore(abstract)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        return eqx.combine(restored["state"], static)

    def saved_config(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def wait(self) -> None:
        """Wait for the asynchronous save in flight; its failure raises CheckpointError."""
        try:
            self.manager.wait_until_finished()
        except (OSError, ValueError) as err:
            raise self._failed("finishing a save", err) from err

    def intact_step(self) -> int | None:
        """The latest complete checkpoint on disk (orbax renames a save into place only when it is complete)."""
        self.manager.reload()
        return self.manager.latest_step()

    def _failed(self, what: str, err: Exception) -> CheckpointError:
        return CheckpointError(f"{self.directory}: {what} failed ({type(err).__name__}: {err})")
