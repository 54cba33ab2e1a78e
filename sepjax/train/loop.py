"""The training loop: data → sharded jit step → logs, audio, validation, checkpoints → bundle."""

import contextlib
import dataclasses
import errno
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from tqdm import tqdm

from sepjax.data.index import TrackIndex, build_index, with_training_tracks
from sepjax.data.layouts import get_layout
from sepjax.data.pipeline import PipelineConfig, input_level, training_dataset
from sepjax.errors import UserError
from sepjax.figures import metric_history_figure
from sepjax.files import write_text_atomic
from sepjax.inference.bundle import save_bundle
from sepjax.inference.separate import InferenceConfig
from sepjax.models import build_model
from sepjax.tensorboard_log import LogError, RunLogger
from sepjax.train.checkpoint import Checkpointer, CheckpointError, check_disk_space
from sepjax.train.config import ConfigError, ExperimentConfig, check_config, config_differences
from sepjax.train.distributed import data_mesh, initialize_from_env, per_process_batch, replicate, shard_batch
from sepjax.train.init_from import frozen_mask, initialise_from
from sepjax.train.optim import after_validation, build_optimizer, current_lr, initial_plateau
from sepjax.train.state import Batch, TrainState
from sepjax.train.step import train_step, train_steps
from sepjax.train.validate import validate


class NonFiniteError(UserError, RuntimeError):
    """Too many non-finite steps in a row."""


class RunInterrupted(UserError, RuntimeError):
    """A run that cannot go on writing (a full disk, an unwritable folder); it can resume from its checkpoint."""


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, float]] = field(default_factory=list)
    best_step: int | None = None
    bundle: Path | None = None
    input_std: float = 1.0
    """The level of the training mixtures (`input_level`): validation and the bundle scale inputs to it."""


def _check_run_dir(config: ExperimentConfig) -> Path:
    """A new run needs a new folder, a resumed one the same experiment's; checked before anything is written."""
    run_dir = Path(config.train.run_dir)
    saved = run_dir / "config.json"
    if saved.exists():
        if not config.train.resume:
            raise ConfigError(f"{run_dir} already holds a run; pass --train.resume to continue it "
                              f"or choose another --train.run-dir")
        diffs = config_differences(json.loads(saved.read_text()), config.to_dict())
        if diffs:
            raise ConfigError(f"cannot resume {run_dir} with a different config:\n  " + "\n  ".join(diffs))
    elif config.train.resume and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} has no config.json to resume from")
    elif run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder; choose another --train.run-dir")
    return run_dir


def _write_run_dir(config: ExperimentConfig) -> Path:
    """Create the run folder and its config.json, once everything else has been checked."""
    run_dir = Path(config.train.run_dir)
    saved = run_dir / "config.json"
    if jax.process_count() > 1:  # every process has checked before the first one writes
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("sepjax: run directory checked")
    run_dir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        write_text_atomic(saved, json.dumps(config.to_dict(), indent=2))
    return run_dir


def load_index(config: ExperimentConfig) -> tuple[TrackIndex, tuple[str, ...]]:
    """The dataset index, checked against the model before anything is compiled."""
    root = Path(config.data.root)
    for folder in (root, *map(Path, config.data.extra_train_roots)):
        if not folder.is_dir():
            raise ConfigError(f"data root {folder} does not exist (render the corpus with "
                              f"`sepjax data chorales {folder}` or point --data.root at your dataset)")
    layout = get_layout(config.data.layout, stems=config.data.stems)
    index = build_index(root, layout)
    if config.data.extra_train_roots:
        extras = [build_index(folder, layout) for folder in config.data.extra_train_roots]
        empty = [e.root for e in extras if not e.split(config.data.train_split)]
        if empty:
            raise ConfigError(f"extra training root(s) {empty} have no tracks in split {config.data.train_split!r}")
        index = with_training_tracks(index, extras, config.data.train_split)
    stems = layout.stems
    if config.model.num_stems != len(stems):
        raise ConfigError(f"model has {config.model.num_stems} stems but the data has {len(stems)} {list(stems)}")
    if config.model.in_channels != config.data.channels:
        raise ConfigError(f"model takes {config.model.in_channels} channel(s), data gives {config.data.channels}")
    found = sorted({name for track in index.tracks for name in track.stems})
    absent = [s for s in stems if s not in found]
    if absent:
        raise ConfigError(f"{root}: no track has stem(s) {absent}; the stems found are {found}")
    if not index.split(config.data.train_split):
        raise ConfigError(f"{root}: no tracks in split {config.data.train_split!r} (have {index.splits()})")
    return index, stems


def report_skipped(index: TrackIndex) -> None:
    """Each track the index left out, and why, before training starts (the pipeline never sees them)."""
    if index.skipped and jax.process_index() == 0:
        print(f"{index.root}: skipping {len(index.skipped)} track(s) that cannot be read:", file=sys.stderr)
        for reason in index.skipped:
            print(f"  {reason}", file=sys.stderr)


def pipeline_config(cfg: ExperimentConfig) -> PipelineConfig:
    """The training data pipeline an experiment reads, this process's shard of it."""
    return PipelineConfig(
        sample_rate=cfg.data.sample_rate, segment_seconds=cfg.data.segment_seconds,
        batch_size=per_process_batch(cfg.data.batch_size), channels=cfg.data.channels, split=cfg.data.train_split,
        seed=cfg.train.seed, silence_db=cfg.data.silence_db, augment=cfg.data.augment,
        num_workers=cfg.data.num_workers, shard_index=jax.process_index(), shard_count=jax.process_count())


@dataclass(frozen=True)
class Hook:
    """`action(step, metrics)` after each step that is a multiple of `every`, and after the last step."""

    every: int
    action: Callable[[int, dict[str, float]], None]

    def due(self, step: int, last: int) -> bool:
        return step % self.every == 0 or step == last


def train(config: ExperimentConfig, *, on_step: Callable[[int, dict, TrainResult], None] | None = None
          ) -> TrainResult:
    """Run (or resume) an experiment; returns the final state and what was logged.

    A short loop over jitted calls of `train.steps_per_call` steps, and hooks after each step: the non-finite
    guard, logging, audio, validation and checkpoints, then `on_step(step, metrics, result)`. Every interval is
    a multiple of steps_per_call, so the hooks that read the state run at the end of a call, where
    `result.state` is that step's state.
    """
    initialize_from_env()
    cfg = config
    check_config(cfg)
    check_intervals(cfg)
    _check_run_dir(cfg)
    index, stems = load_index(cfg)
    report_skipped(index)
    key = jax.random.PRNGKey(cfg.train.seed)
    model_key, state_key = jax.random.split(key)
    model = build_model(cfg.model, key=model_key)
    resuming = cfg.train.resume and any((Path(cfg.train.run_dir) / "checkpoints").glob("[0-9]*"))
    if cfg.train.init_from and not resuming:  # a resumed run's weights come from its checkpoint
        model, report = initialise_from(model, cfg.train.init_from, partial=cfg.train.init_partial)
        if jax.process_index() == 0:
            print("\n".join(report.lines()), file=sys.stderr)
    frozen = frozen_mask(model, cfg.train.freeze) if cfg.train.freeze else None
    optimizer = build_optimizer(cfg.optim, cfg.train.steps, frozen)
    state = TrainState.create(model, optimizer, key=state_key, ema=cfg.optim.ema_decay > 0,
                              plateau=initial_plateau(cfg.optim))
    check_disk_space(Path(cfg.train.run_dir) / "checkpoints", state, cfg.train.keep_last + 1)
    mesh = data_mesh()
    pipeline = pipeline_config(cfg)
    data = iter(training_dataset(index, pipeline))
    level = input_level(index, pipeline)
    run_dir = _write_run_dir(cfg)
    checkpoints = Checkpointer(run_dir / "checkpoints", keep_last=cfg.train.keep_last, best_metric="valid_metric")
    if cfg.train.resume and checkpoints.latest_step() is not None:
        state = checkpoints.restore(state, data)
    run = _Run(cfg, run_dir, replicate(state, mesh), data, stems,
               index.split(cfg.data.valid_split)[: cfg.data.valid_tracks], checkpoints,
               RunLogger(run_dir / "tensorboard") if jax.process_index() == 0 else None, level)
    if run.logger:
        run.logger.scalars(int(run.state.step), {"skipped_tracks": float(len(index.skipped))}, prefix="data/")
    hooks = run.hooks()
    if on_step is not None:
        hooks.append(Hook(1, lambda step, metrics: on_step(step, metrics, run.result)))
    last = cfg.train.steps
    bar = run.bar = tqdm(total=last, initial=run.start, desc=cfg.name, unit="step",
                         disable=not (jax.process_index() == 0 and cfg.log.progress))
    finished = False
    try:
        step, upcoming = run.start, []
        while step < last:
            run.batches = upcoming or [next(data) for _ in range(call_length(step, cfg))]
            run.state, metrics = run_steps(optimizer, run.state, run.batches, mesh, cfg)
            end = step + len(run.batches)
            # The next call's batches load while this one computes, unless this one ends on a checkpoint, which
            # must record the iterator right after its own batches.
            upcoming = [] if run.saves(end) else [next(data) for _ in range(call_length(end, cfg))]
            metrics = host_metrics(metrics)
            for done in range(step + 1, end + 1):
                run.reached = done
                step_metrics = {name: values[done - step - 1] for name, values in metrics.items()}
                for hook in hooks:
                    if hook.due(done, last):
                        hook.action(done, step_metrics)
                bar.update(1)
            step = end
        checkpoints.wait()
        run.result.best_step = checkpoints.best_step()
        if cfg.train.export_bundle and jax.process_index() == 0:
            final = run.state.ema if run.state.ema is not None else run.state.model
            run.result.bundle = save_bundle(run_dir / "bundle", jax.device_get(final), stems, cfg.data.sample_rate,
                                            chunk_seconds=cfg.train.chunk_seconds, input_std=run.result.input_std,
                                            overwrite=True)
        if run.logger:
            run.logger.close()
        finished = True
    except (CheckpointError, LogError, OSError) as err:
        if not isinstance(err, CheckpointError | LogError) and err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise RunInterrupted(f"{err}\nTraining stopped at step {run.reached}. "
                             f"{_intact(checkpoints)}: free space, then rerun with --train.resume") from err
    finally:
        bar.close()
        if not finished:  # the error in flight is the one to report: these may fail the same way
            with contextlib.suppress(Exception):
                checkpoints.wait()
            if run.logger:
                with contextlib.suppress(Exception):
                    run.logger.close()
    return run.result


class _Run:
    """What one run's hooks read and change: the state, the last call's batches, logs, validations, checkpoints."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, state: TrainState, data, stems: tuple[str, ...],
                 valid_tracks: list, checkpoints: Checkpointer, logger: RunLogger | None, input_std: float):
        self.cfg, self._state, self.data, self.stems = cfg, state, data, stems
        self.valid_tracks, self.checkpoints, self.logger = valid_tracks, checkpoints, logger
        self.result = TrainResult(run_dir, state, input_std=input_std)
        self.bar: tqdm | None = None
        self.checkpoint_hook = Hook(cfg.train.checkpoint_every, self.checkpoint)
        self.start = self.reached = int(state.step)
        self.batches: list[dict] = []
        self.last_valid: dict[str, float] | None = None
        self.bad_in_a_row = 0
        self.clock = time.perf_counter()
        self.inference = InferenceConfig(chunk=int(cfg.train.chunk_seconds * cfg.data.sample_rate), overlap=0.25,
                                         batch_size=4)

    @property
    def state(self) -> TrainState:
        return self._state

    @state.setter
    def state(self, state: TrainState) -> None:
        self._state = self.result.state = state

    def hooks(self) -> list[Hook]:
        c = self.cfg
        hooks = [Hook(1, self.guard_non_finite), Hook(c.log.log_every, self.log)]
        if self.logger:
            hooks.append(Hook(c.log.audio_every, self.audio))
        if self.valid_tracks:
            hooks.append(Hook(c.train.valid_every, self.validate))
        return [*hooks, self.checkpoint_hook]

    def saves(self, step: int) -> bool:
        return self.checkpoint_hook.due(step, self.cfg.train.steps)

    def guard_non_finite(self, step: int, metrics: dict) -> None:
        self.bad_in_a_row = self.bad_in_a_row + 1 if metrics["skipped"] else 0
        if self.bad_in_a_row >= self.cfg.train.max_nonfinite:
            raise NonFiniteError(
                f"{self.bad_in_a_row} non-finite steps in a row at step {step}; stopping. The last good checkpoint "
                f"({self.checkpoints.latest_step()}) in {self.checkpoints.directory} is intact: lower --optim.lr or "
                f"check the data, then resume with --train.resume")

    def log(self, step: int, metrics: dict) -> None:
        c = self.cfg
        elapsed = time.perf_counter() - self.clock
        scalars = {name: float(v) for name, v in metrics.items()}
        steps_done = c.log.log_every if step % c.log.log_every == 0 else step - self.start
        scalars.update(lr=current_lr(c.optim, c.train.steps, step, self.state.plateau),
                       steps_per_s=steps_done / elapsed, segments_per_s=steps_done * c.data.batch_size / elapsed)
        self.clock = time.perf_counter()
        self.result.history.append({"step": step, **scalars})
        if self.logger:
            self.logger.scalars(step, scalars, prefix="train/")
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{scalars['loss']:.2f}", si_sdr=f"{scalars['si_sdr']:.1f}",
                                 seg_s=f"{scalars['segments_per_s']:.1f}")

    def audio(self, step: int, metrics: dict) -> None:
        _log_batch_audio(self.logger, step, self.state, self.batches[-1], self.stems, self.cfg.data.sample_rate)

    def validate(self, step: int, metrics: dict) -> None:
        c = self.cfg
        self.last_valid = _run_validation(self.state, self.valid_tracks, self.stems, c, self.inference,
                                          self.result.input_std, self.logger, step)
        self.result.validations.append({"step": step, **self.last_valid})
        if self.logger:
            self.logger.image(step, "valid/si_sdr_per_stem", validation_history_figure(self.result.validations,
                                                                                       self.stems))
        if self.state.plateau is not None:
            plateau = after_validation(c.optim, self.state.plateau, self.last_valid[c.train.best_metric])
            self.state = eqx.tree_at(lambda s: s.plateau, self.state, plateau)

    def checkpoint(self, step: int, metrics: dict) -> None:
        best = None if self.last_valid is None else {"valid_metric": self.last_valid[self.cfg.train.best_metric]}
        self.checkpoints.save(step, self.state, self.data, self.cfg.to_dict(), best)


def _intact(checkpoints: Checkpointer) -> str:
    try:
        step = checkpoints.intact_step()
    except Exception:
        step = None
    if step is None:
        return f"No checkpoint in {checkpoints.directory} is complete"
    return f"Checkpoint {step} in {checkpoints.directory} is intact"


def _run_validation(state, tracks, stems, cfg, inference, input_std, logger, step) -> dict[str, float]:
    model = jax.device_get(state.ema if state.ema is not None else state.model)
    metrics, example = validate(model, tracks, stems, cfg.data.sample_rate, inference, input_std)
    if logger:
        logger.scalars(step, metrics, prefix="valid/")
        if example is not None:
            names = [s for s, p in zip(stems, example["present"], strict=True) if p]
            present = example["present"]
            logger.separation_audio(step, example["mixture"], example["targets"][present],
                                    example["estimates"][present], names, cfg.data.sample_rate, prefix="valid/")
            logger.spectrograms(step, example["targets"][present], example["estimates"][present], names,
                                cfg.data.sample_rate, prefix="valid/")
    return metrics


def validation_history_figure(validations: list[dict], stems: tuple[str, ...]) -> np.ndarray:
    """Each stem's validation SI-SDR over the rounds so far, as an RGB image."""
    present = [s for s in stems if all(f"{s}/si_sdr" in v for v in validations)]
    return metric_history_figure([v["step"] for v in validations],
                                 {s: [v[f"{s}/si_sdr"] for v in validations] for s in present},
                                 "validation SI-SDR (dB)")


def call_length(step: int, cfg: ExperimentConfig) -> int:
    """Steps in the call that starts after `step`: calls end on multiples of steps_per_call (a resumed run may
    start between two) and at the last step, so audio, validation and checkpoints all fall on a call's end."""
    per_call = cfg.train.steps_per_call
    return min(per_call - step % per_call, cfg.train.steps - step)


def run_steps(optimizer, state: TrainState, raws: list[dict], mesh, cfg: ExperimentConfig
              ) -> tuple[TrainState, dict[str, jax.Array]]:
    """Dispatch one jitted call over `raws` (one batch each), without waiting for it: `train_step`, or
    `train_steps` when steps_per_call > 1."""
    if cfg.train.steps_per_call == 1:
        (raw,) = raws
        batch = shard_batch(Batch(raw["mixture"], raw["targets"], raw["mask"]), mesh)
        return train_step(optimizer, state, batch, cfg.loss, cfg.optim.ema_decay)
    batches = Batch(*(np.stack([raw[name] for raw in raws]) for name in ("mixture", "targets", "mask")))
    return train_steps(optimizer, state, shard_batch(batches, mesh, stacked=True), cfg.loss, cfg.optim.ema_decay)


def host_metrics(metrics: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """A call's metrics on the host, one value per step (waits for the call)."""
    return {name: np.atleast_1d(np.asarray(values)) for name, values in metrics.items()}


def check_intervals(config: ExperimentConfig) -> None:
    """Every interval must be a multiple of steps_per_call: audio, validation and checkpoints need the state after
    their step, which `train_steps` returns only at the end of a call, and steps_per_s is timed between calls."""
    per_call = config.train.steps_per_call
    intervals = {"log.log_every": config.log.log_every, "log.audio_every": config.log.audio_every,
                 "train.valid_every": config.train.valid_every, "train.checkpoint_every": config.train.checkpoint_every}
    for name, every in intervals.items():
        if every % per_call:
            raise ConfigError(f"{name}={every} is not a multiple of train.steps_per_call={per_call}")


@eqx.filter_jit
def _forward(model, mixture):
    return model(mixture)


def _log_batch_audio(logger, step, state, raw, stems, sample_rate) -> None:
    model = jax.device_get(state.model)
    estimates = np.asarray(_forward(model, jax.numpy.asarray(raw["mixture"][0])))
    present = raw["mask"][0] > 0
    names = [s for s, p in zip(stems, present, strict=True) if p]
    logger.separation_audio(step, raw["mixture"][0], raw["targets"][0][present], estimates[present], names,
                            sample_rate, prefix="train/")
    logger.spectrograms(step, raw["targets"][0][present], estimates[present], names, sample_rate, prefix="train/")


def replace(config: ExperimentConfig, **sections) -> ExperimentConfig:
    """`replace(cfg, train={"steps": 5})`: a copy with fields of nested sections replaced."""
    changes = {name: dataclasses.replace(getattr(config, name), **values) for name, values in sections.items()}
    return dataclasses.replace(config, **changes)
