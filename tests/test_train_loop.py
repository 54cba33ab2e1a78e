"""The training loop: logs, checkpoints, resume after SIGKILL, the non-finite guard, errors before compute."""

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_helpers import STEMS, tiny_experiment

from sepjax.bundle import load_bundle
from sepjax.train.checkpoint import CheckpointError
from sepjax.train.loop import ConfigError, NonFiniteError, replace, train

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def standard_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats with int32 counts
        yield


def params(state_or_model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state_or_model, eqx.is_inexact_array))]


def test_training_logs_scalars_audio_images_and_exports_a_bundle(tmp_path):
    config = tiny_experiment(tmp_path)
    result = train(config)
    assert int(result.state.step) == 4 and len(result.history) == 4
    assert [v["step"] for v in result.validations] == [2, 4]
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"audio": 0, "images": 0,
                                                                                    "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/neg_si_sdr", "train/mr_stft", "train/lr", "train/grad_norm",
            "train/segments_per_s", "train/steps_per_s"} <= scalars
    assert {f"valid/{s}/si_sdr" for s in STEMS} | {f"valid/{s}/sdr" for s in STEMS} <= scalars
    audio = set(events.Tags()["audio"])
    assert {"train/mixture", "train/target/soprano", "train/estimate/soprano", "valid/estimate/bass"} <= audio
    assert {"train/spectrogram/alto", "valid/spectrogram/tenor"} <= set(events.Tags()["images"])
    assert len(events.Scalars("train/loss")) == 4
    bundle = load_bundle(result.bundle)
    assert bundle.stem_names == STEMS and bundle.sample_rate == 8000
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["train"]["steps"] == 4 and saved["model"]["num_stems"] == 4


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
    straight = train(tiny_experiment(tmp_path / "a", steps=20, checkpoint_every=10, valid_every=1000))
    b = tmp_path / "b"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from train_helpers import tiny_experiment
        from sepjax.train.loop import train
        config = tiny_experiment(Path({str(b)!r}), steps=20, checkpoint_every=10, valid_every=1000)
        def kill_after_checkpoint(step, metrics, result):
            if step == 10:
                saved = result.run_dir / "checkpoints" / "10"
                for _ in range(600):
                    if saved.is_dir() and (saved / "_CHECKPOINT_METADATA").exists():
                        break
                    time.sleep(0.1)
                os.kill(os.getpid(), signal.SIGKILL)
        train(config, on_step=kill_after_checkpoint)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    resumed = train(dataclasses.replace(tiny_experiment(b, steps=20, checkpoint_every=10, valid_every=1000),
                                        train=dataclasses.replace(tiny_experiment(b).train, steps=20,
                                                                  checkpoint_every=10, valid_every=1000,
                                                                  resume=True)))
    assert int(resumed.state.step) == 20
    for x, y in zip(params(straight.state.model), params(resumed.state.model), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_several_steps_per_call_train_the_same_run_and_resume_between_calls(tmp_path):
    def experiment(folder, steps):
        config = tiny_experiment(tmp_path / folder, steps=steps, checkpoint_every=2, valid_every=1000)
        return replace(config, log={"log_every": 2})

    straight = train(experiment("a", 6))
    train(experiment("b", 3))  # one step per call; checkpoints at 2 and at the last step, 3
    resumed = train(replace(experiment("b", 6), train={"resume": True, "steps_per_call": 2}))  # calls: 4, then 5-6
    assert int(resumed.state.step) == 6
    assert [h["step"] for h in resumed.history] == [4, 6]
    for step in (4, 6):
        np.testing.assert_allclose(resumed.history[step // 2 - 2]["loss"], straight.history[step // 2 - 1]["loss"],
                                   rtol=1e-5)
    # Adam moves each weight by up to lr = 1e-3 a step; the scanned and the single step round differently.
    for x, y in zip(params(straight.state), params(resumed.state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def test_errors_before_any_compute(tmp_path, monkeypatch):
    config = tiny_experiment(tmp_path)
    with pytest.raises(ConfigError, match="data root .*missing does not exist"):
        train(replace(config, data={"root": str(tmp_path / "missing")}))
    with pytest.raises(ConfigError, match="model has 5 stems but the data has 4"):
        train(dataclasses.replace(config, model=config.model.replace(num_stems=5)))
    with pytest.raises(ConfigError, match=r"log.log_every=1 is not a multiple of train.steps_per_call=3"):
        train(replace(config, train={"steps_per_call": 3}))
    train(config)
    with pytest.raises(ConfigError, match="already holds a run; pass --train.resume"):
        train(config)
    with pytest.raises(ConfigError, match="different config:\n  optim.lr: 0.001 → 0.002"):
        train(replace(config, train={"resume": True}, optim={"lr": 2e-3}))
    Disk = type("Disk", (), {"free": 1024})
    monkeypatch.setattr("sepjax.train.checkpoint.shutil.disk_usage", lambda path: Disk)
    with pytest.raises(CheckpointError, match="MiB free, checkpoints need about"):
        train(replace(config, train={"run_dir": str(tmp_path / "other")}))
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = tiny_experiment(tmp_path, steps=2, checkpoint_every=2, valid_every=1000)
    train(config)
    from sepjax.train.checkpoint import Checkpointer

    real_save = Checkpointer.save

    def full_disk(self, step, *args, **kwargs):
        if step > 2:
            raise CheckpointError(f"{self.directory}: saving step {step} failed ([Errno 28] No space left on "
                                  f"device); the previous checkpoint is intact")
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(Checkpointer, "save", full_disk)
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        train(replace(config, train={"steps": 4, "resume": True}))
    monkeypatch.undo()
    resumed = train(replace(config, train={"steps": 4, "resume": True}))
    assert int(resumed.state.step) == 4


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    config = tiny_experiment(tmp_path, steps=8, max_nonfinite=3, checkpoint_every=1, valid_every=1000)
    train(replace(config, train={"steps": 1}))
    # An absurd learning rate overflows the weights: every later step is non-finite and skipped.
    blown = replace(config, train={"resume": True}, optim={"lr": 1e30})
    saved = json.loads((Path(config.train.run_dir) / "config.json").read_text())
    saved["optim"]["lr"] = 1e30  # the same experiment, as far as the resume check is concerned
    (Path(config.train.run_dir) / "config.json").write_text(json.dumps(saved))
    history = []
    with pytest.raises(NonFiniteError, match="3 non-finite steps in a row .*last good checkpoint"):
        train(blown, on_step=lambda step, metrics, result: history.append(int(metrics["skipped"])))
    assert history[-2:] == [1, 1]  # the third one in a row raises before its callback
    from sepjax.train.checkpoint import Checkpointer

    checkpoints = Checkpointer(Path(config.train.run_dir) / "checkpoints")
    assert checkpoints.latest_step() == 1 + len(history)  # skipped steps never replace a good checkpoint's weights
