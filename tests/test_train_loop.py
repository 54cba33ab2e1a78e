"""The training loop: logs, checkpoints, resume after SIGKILL, the non-finite guard, errors before compute."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from fixtures import make_jacappella, tone, write_track
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_helpers import STEMS, tiny_experiment

from sepjax.data.pipeline import input_level
from sepjax.inference.bundle import load_bundle
from sepjax.models import build_model
from sepjax.train.checkpoint import CheckpointError
from sepjax.train.cli import parse
from sepjax.train.loop import ConfigError, NonFiniteError, load_index, pipeline_config, replace, train

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
    images = set(events.Tags()["images"])
    assert {"train/spectrogram/alto", "valid/spectrogram/tenor", "valid/si_sdr_per_stem"} <= images
    spectrogram = events.Images("valid/spectrogram/tenor")[-1]  # target | estimate, axes and colour bar
    assert (spectrogram.height, spectrogram.width) == (340, 1000)
    assert len(events.Images("valid/si_sdr_per_stem")) == 2  # one curve figure per validation
    assert len(events.Scalars("train/loss")) == 4
    bundle = load_bundle(result.bundle)
    assert bundle.stem_names == STEMS and bundle.sample_rate == 8000
    # The bundle records the level of the mixtures the run trained on, which validation also scaled to.
    level = input_level(load_index(config)[0], pipeline_config(config))
    assert bundle.input_std == result.input_std == pytest.approx(level) and 0.1 < level < 1.0
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


def test_extra_training_roots_join_the_training_split_only(tmp_path):
    config = tiny_experiment(tmp_path)
    other = make_jacappella(tmp_path / "other render", seconds=1.0)
    parsed = parse(config, ["--data.extra-train-roots", str(other)])
    assert parsed.data.extra_train_roots == (str(other),)
    index, _ = load_index(parsed)
    own, _ = load_index(config)
    assert len(own.split("train")) == 3 and len(index.split("train")) == 6
    extra = [t for t in index.split("train") if t.track_id.startswith(f"{other}:")]
    assert {t.track_id.split(":")[-1] for t in extra} == {t.track_id for t in own.split("train")}
    assert all(t.stems["soprano"].path.startswith(str(other)) for t in extra)
    # Validation and test read the main root alone.
    assert [t.track_id for t in index.split("test")] == [t.track_id for t in own.split("test")]
    with pytest.raises(ConfigError, match="data root .*absent does not exist"):
        load_index(replace(config, data={"extra_train_roots": (str(tmp_path / "absent"),)}))
    only_test = tmp_path / "only test"
    write_track(only_test / "pop" / "song_c", {s: tone(1.0, 48000, 300) for s in STEMS}, 48000)
    (only_test / "test_song_list_for_vocal_ensemble_separation.txt").write_text("song_c\n")
    with pytest.raises(ConfigError, match="have no tracks in split 'train'"):
        load_index(replace(config, data={"extra_train_roots": (str(only_test),)}))


def user_namespaces_work() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode == 0


FULL_DISK_RUN = """
import sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from train_helpers import tiny_experiment
from sepjax.cli import main

disk, data = Path({disk!r}), Path({data!r})
run = disk / "run"
def fill_the_disk_once_checkpoint_2_is_complete():
    while not (run / "checkpoints" / "2" / "_CHECKPOINT_METADATA").exists():
        time.sleep(0.02)
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass
threading.Thread(target=fill_the_disk_once_checkpoint_2_is_complete, daemon=True).start()
args = ["train", "experiments/chorales_sepreformer.py", "--data.root", str(data / "jc"), "--data.layout",
        "jacappella", "--data.stems", "soprano", "alto", "tenor", "bass", "--data.segment-seconds", "0.5",
        "--data.sample-rate", "8000", "--train.steps", "6", "--train.checkpoint-every", "2",
        "--train.valid-every", "1000", "--train.chunk-seconds", "0.5", "--train.run-dir", str(run),
        "--train.steps-per-call", "1", "--log.log-every", "1", "--log.audio-every", "2", "--log.no-progress"]
code = main(args)
print("first run exit", code, flush=True)
print("=== resuming", file=sys.stderr, flush=True)
(disk / "filler").unlink()
print("resumed exit", main([*args, "--train.resume"]), flush=True)
"""


@pytest.mark.skipif(not user_namespaces_work(), reason="needs `unshare` and user namespaces to mount a small tmpfs")
def test_a_full_disk_stops_the_run_naming_the_intact_checkpoint_which_resumes(tmp_path):
    # A real full disk: a 64 MiB tmpfs, mounted in a user namespace (no root needed), filled once checkpoint 2 is
    # on it. Whichever write fails first (a checkpoint or the TensorBoard log), the run must stop with the
    # error and the intact checkpoint as its last lines, and resume once there is space.
    tiny_experiment(tmp_path)  # the data, outside the small disk
    disk = tmp_path / "disk"
    disk.mkdir()
    script = FULL_DISK_RUN.format(tests=str(HERE), disk=str(disk), data=str(tmp_path))
    command = f"mount -t tmpfs -o size=64m tmpfs {disk} && exec {sys.executable} -c \"$SCRIPT\""
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command],
                          capture_output=True, text=True, timeout=300, cwd=HERE.parent,
                          env={**os.environ, "SCRIPT": script})
    assert "first run exit 2" in proc.stdout, proc.stderr[-3000:]
    first_run = proc.stderr.split("=== resuming")[0]
    last = first_run.strip().splitlines()[-2:]
    assert last[0].startswith(f"error: {disk / 'run'}") and "No space left" in first_run, last
    assert re.fullmatch(rf"Training stopped at step [2-6]\. Checkpoint 2 in {disk / 'run' / 'checkpoints'} is "
                        rf"intact: free space, then rerun with --train.resume", last[1]), last
    assert "resumed exit 0" in proc.stdout, proc.stderr[-3000:]


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    config = tiny_experiment(tmp_path, steps=8, max_nonfinite=3, checkpoint_every=1, valid_every=1000)
    train(replace(config, train={"steps": 1}))
    # An absurd learning rate overflows the weights: every later step is non-finite and skipped.
    blown = replace(config, train={"resume": True}, optim={"lr": 1e30})
    saved = json.loads((Path(config.train.run_dir) / "config.json").read_text())
    saved["optim"]["lr"] = 1e30  # the same experiment, as far as the resume check is concerned
    (Path(config.train.run_dir) / "config.json").write_text(json.dumps(saved))
    history, good = [], {}

    def watch(step, metrics, result):
        history.append(int(metrics["skipped"]))
        if not metrics["skipped"]:
            good.update(step=step, weights=params(result.state.model))  # copied before the next call donates them

    with pytest.raises(NonFiniteError, match="3 non-finite steps in a row .*last good checkpoint"):
        train(blown, on_step=watch)
    assert history[-2:] == [1, 1]  # the third one in a row raises before its callback
    assert good["step"] == 2  # the blown-up weights are finite; the step after them is not
    from sepjax.train.checkpoint import Checkpointer
    from sepjax.train.optim import build_optimizer
    from sepjax.train.state import TrainState

    checkpoints = Checkpointer(Path(config.train.run_dir) / "checkpoints")
    assert checkpoints.latest_step() == 1 + len(history)
    template = TrainState.create(build_model(config.model, key=jax.random.PRNGKey(0)),
                                 build_optimizer(config.optim, config.train.steps), key=jax.random.PRNGKey(1))
    saved = params(checkpoints.restore(template, None).model)
    assert all(np.all(np.isfinite(w)) for w in saved)
    for w, expected in zip(saved, good["weights"], strict=True):  # skipped steps kept the last good weights
        np.testing.assert_array_equal(w, expected)


BAD_VALUES = [
    ({"train": {"steps": 0}}, "train.steps=0: must be at least 1"),
    ({"train": {"steps": -5}}, "train.steps=-5"),
    ({"optim": {"lr": -1.0}}, "optim.lr=-1.0: must be a positive number"),
    ({"optim": {"lr": float("nan")}}, "optim.lr=nan"),
    ({"train": {"checkpoint_every": 0}}, "train.checkpoint_every=0"),
    ({"data": {"sample_rate": 0}}, "data.sample_rate=0"),
    ({"data": {"batch_size": 0}}, "data.batch_size=0"),
    ({"data": {"segment_seconds": 0.0}}, "data.segment_seconds=0.0"),
    ({"data": {"segment_seconds": 1e-6}}, "under one sample at 8000 Hz"),
    ({"data": {"channels": 3}}, "data.channels=3: must be 1 or 2"),
    ({"train": {"valid_every": 0}}, "train.valid_every=0"),
    ({"train": {"keep_last": 0}}, "train.keep_last=0"),
    ({"train": {"max_nonfinite": 0}}, "train.max_nonfinite=0"),
    ({"train": {"chunk_seconds": -1.0}}, "train.chunk_seconds=-1.0"),
    ({"train": {"steps_per_call": 0}}, "train.steps_per_call=0"),
    ({"log": {"log_every": 0}}, "log.log_every=0"),
    ({"log": {"audio_every": -2}}, "log.audio_every=-2"),
    ({"optim": {"ema_decay": 1.0}}, "optim.ema_decay=1.0"),
    ({"optim": {"grad_accum": 0}}, "optim.grad_accum=0"),
    ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps=-1"),
    ({"optim": {"min_lr_ratio": 2.0}}, "optim.min_lr_ratio=2.0"),
    ({"optim": {"clip_norm": 0.0}}, "optim.clip_norm=0.0"),
    ({"data": {"valid_tracks": -1}}, "data.valid_tracks=-1"),
    ({"data": {"stems": ("soprano", "soprano", "tenor", "bass")}}, "must be distinct names"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_VALUES, ids=lambda v: str(v)[:40])
def test_values_the_loop_cannot_run_with_are_refused_before_anything_is_written(tmp_path, changes, message,
                                                                                   monkeypatch):
    config = tiny_experiment(tmp_path)
    # Nothing may be computed: building the model is the first compute.
    monkeypatch.setattr("sepjax.train.loop.build_model", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(replace(config, **changes))
    assert not Path(config.train.run_dir).exists()


def test_cli_refusal_leaves_no_run_folder_and_the_corrected_command_runs(tmp_path, capsys):
    from sepjax.cli import main

    tiny_experiment(tmp_path)
    args = ["train", "experiments/chorales_sepreformer.py", "--data.root", str(tmp_path / "jc"), "--data.layout",
            "jacappella", "--data.stems", "soprano", "alto", "tenor", "bass", "--data.sample-rate", "8000",
            "--data.segment-seconds", "0.5", "--train.steps", "2", "--train.steps-per-call", "2",
            "--train.valid-every", "2", "--train.checkpoint-every", "2", "--train.chunk-seconds", "0.5",
            "--log.log-every", "2", "--log.audio-every", "2", "--train.run-dir", str(tmp_path / "run"),
            "--log.no-progress"]
    assert main([*args, "--data.batch-size", "0"]) == 2
    assert "data.batch_size=0: must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main([*args, "--data.batch-size", "2"]) == 0
    assert main([*args, "--data.stems", "soprano", "alto", "tenor", "piano", "--train.run-dir",
                 str(tmp_path / "piano")]) == 2
    err = capsys.readouterr().err
    assert "no track has stem(s) ['piano']; the stems found are ['alto', 'bass', 'finger_snap', 'lead_vocal', " \
           "'soprano', 'tenor']" in err
    assert not (tmp_path / "piano").exists()


def test_a_moved_run_folder_resumes_and_unreadable_tracks_are_reported(tmp_path, capsys):
    config = tiny_experiment(tmp_path, steps=2, valid_every=1000)
    root = Path(config.data.root)
    (root / "pop" / "song_b" / "tenor.wav").write_bytes(b"RIFF\x00\x00 a bad header")
    first = train(config)
    err = capsys.readouterr().err
    assert f"{root}: skipping 1 track(s) that cannot be read:" in err and "pop/song_b" in err
    events = EventAccumulator(str(first.run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("data/skipped_tracks")] == [1.0]
    moved = tmp_path / "moved"
    shutil.copytree(first.run_dir, moved)
    resumed = train(replace(config, train={"run_dir": str(moved), "steps": 4, "resume": True}))
    assert int(resumed.state.step) == 4 and [h["step"] for h in resumed.history] == [3, 4]
