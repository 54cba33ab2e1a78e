"""Live streaming: length-free chunk plans, latency, start-of-stream statistics, and `sepjax stream` through a pipe
against `sepjax separate` on the same file."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import soundfile as sf

from sepjax.cli import main
from sepjax.errors import InputError
from sepjax.inference.bundle import save_bundle
from sepjax.inference.separate import InferenceConfig, normalize, separate_array, separate_stream, stats_from_start
from sepjax.models import build_model, get_config


def context_model(chunks: np.ndarray) -> np.ndarray:
    """(B, C, T) → (B, 2, C, T): nonlinear, and dependent on each sample's place in its chunk and on the whole
    chunk, so any misplaced chunk or sample changes the result."""
    ramp = np.linspace(-1.0, 1.0, chunks.shape[-1], dtype=np.float32)
    context = chunks.mean(axis=-1, keepdims=True)
    return np.stack([np.tanh(chunks + ramp * context), chunks * chunks - ramp], axis=1).astype(np.float32)


def blocks_of(audio: np.ndarray, sizes: list[int]):
    start = 0
    for size in sizes:
        if start >= audio.shape[-1]:
            return
        yield audio[:, start:start + size]
        start += size
    if start < audio.shape[-1]:
        yield audio[:, start:]


@pytest.mark.parametrize("chunk,hop", [(32, 8), (50, 17), (16, 16)])
@pytest.mark.parametrize("batch", [1, 3])
def test_a_length_free_stream_gives_the_samples_of_a_known_length_one(chunk, hop, batch):
    rng = np.random.default_rng(chunk + hop + batch)
    config = InferenceConfig(chunk=chunk, hop=hop, batch_size=batch, normalize="none", window="hann")
    for length in sorted({1, 5, hop, max(chunk - hop, 1), chunk, chunk + 1, 3 * hop + 1, 257}):
        audio = rng.standard_normal((2, length)).astype(np.float32)
        sizes = list(rng.integers(1, 2 * chunk, 40))
        known = np.concatenate(list(separate_stream(context_model, blocks_of(audio, sizes), length, 2, config)), -1)
        live = np.concatenate(list(separate_stream(context_model, blocks_of(audio, sizes), None, 2, config)), -1)
        assert live.shape == known.shape == (2, 2, length)
        np.testing.assert_array_equal(live, known)


def test_a_length_free_stream_with_shifts_and_statistics_matches_the_known_length_one():
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((1, 300)).astype(np.float32)
    config = InferenceConfig(chunk=40, overlap=0.5, batch_size=2, shifts=3, normalize="none")
    _, stats = normalize(audio)
    known = np.concatenate(list(separate_stream(context_model, blocks_of(audio, [37] * 20), 300, 1, config, stats)),
                           -1)
    live = np.concatenate(list(separate_stream(context_model, blocks_of(audio, [37] * 20), None, 1, config, stats)),
                          -1)
    np.testing.assert_array_equal(live, known)


def test_stream_output_lags_its_input_by_less_than_a_chunk_plus_a_hop():
    chunk, hop = 64, 16
    config = InferenceConfig(chunk=chunk, hop=hop, batch_size=1, normalize="none")
    audio = np.random.default_rng(2).standard_normal((1, 1000)).astype(np.float32)
    fed, lags = 0, []
    written = 0

    def arriving():  # a block of one hop at a time; before each next block, measure what has come out
        nonlocal fed
        for start in range(0, audio.shape[-1], hop):
            lags.append(fed - written)
            block = audio[:, start:start + hop]
            fed += block.shape[-1]
            yield block

    for piece in separate_stream(context_model, arriving(), None, 1, config):
        written += piece.shape[-1]
    assert written == audio.shape[-1]
    assert max(lags) < chunk + hop
    assert max(lags) >= chunk - hop  # the bound is not loose: a chunk's right context must arrive first


def test_start_statistics_read_only_the_first_chunk_and_match_separate_array():
    rng = np.random.default_rng(3)
    audio = (3.0 * rng.standard_normal((2, 500)) + 0.5).astype(np.float32)
    pulled = []

    def blocks():
        for start in range(0, 500, 30):
            pulled.append(start)
            yield audio[:, start:start + 30]

    stats, again = stats_from_start(blocks(), 100)
    assert len(pulled) == 4  # 120 samples hold the first 100; nothing further is read yet
    _, expected = normalize(audio[:, :100])
    assert stats == expected
    np.testing.assert_array_equal(np.concatenate(list(again), -1), audio)
    short, _ = stats_from_start(iter([audio[:, :10]]), 100)
    assert short == normalize(audio[:, :10])[1]
    with pytest.raises(InputError, match="empty"):
        stats_from_start(iter([]), 100)
    config = InferenceConfig(chunk=100, overlap=0.5, batch_size=2, normalize="start")
    by_hand = np.concatenate(list(separate_stream(context_model, [audio], 500, 2, config, expected)), -1)
    np.testing.assert_array_equal(separate_array(context_model, audio, config), by_hand)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "bundle"
    model = build_model(get_config("dual-path-sepreformer-tiny", num_stems=2), key=jax.random.PRNGKey(0))
    save_bundle(path, model, ["low", "high"], 8000)
    return path


def stream_command(bundle, out, *flags):
    return [sys.executable, "-m", "sepjax.cli", "stream", str(bundle), "--out", str(out), "--chunk-seconds", "0.25",
            *flags]


def test_streaming_a_file_through_a_pipe_gives_the_samples_of_separate(bundle, tmp_path):
    t = np.arange(10500) / 8000
    song = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1500 * t) ** 3).astype(np.float32)
    sf.write(tmp_path / "song.wav", song, 8000, subtype="FLOAT")
    assert main(["separate", str(bundle), str(tmp_path / "song.wav"), "--out", str(tmp_path / "sep"),
                 "--chunk-seconds", "0.25", "--batch-size", "1", "--normalize", "start"]) == 0
    with open(tmp_path / "song.wav", "rb") as f:
        run = subprocess.run(stream_command(bundle, tmp_path / "live"), stdin=f, capture_output=True, text=True,
                             timeout=300)
    assert run.returncode == 0, run.stderr
    assert "latency at most 0.38 s" in run.stderr
    for stem in ("low", "high"):
        offline, rate = sf.read(tmp_path / "sep" / "song" / f"{stem}.wav", dtype="float32")
        live, live_rate = sf.read(tmp_path / "live" / f"{stem}.wav", dtype="float32")
        assert live_rate == rate == 8000 and live.shape == offline.shape == song.shape
        np.testing.assert_array_equal(live, offline)


def test_raw_pcm_at_another_rate_streams_like_separate_on_the_same_samples(bundle, tmp_path):
    rng = np.random.default_rng(4)
    pcm = (rng.standard_normal((16000, 2)) * 4000).astype(np.int16)
    sf.write(tmp_path / "song.wav", pcm, 16000, subtype="PCM_16")
    assert main(["separate", str(bundle), str(tmp_path / "song.wav"), "--out", str(tmp_path / "sep"),
                 "--chunk-seconds", "0.25", "--batch-size", "1", "--normalize", "none", "--bits", "16"]) == 0
    run = subprocess.run(stream_command(bundle, tmp_path / "live", "--raw-rate", "16000", "--raw-channels", "2",
                                        "--normalize", "none", "--bits", "16"),
                         input=pcm.tobytes(), capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    offline, _ = sf.read(tmp_path / "sep" / "song" / "low.wav", dtype="int16")
    live, rate = sf.read(tmp_path / "live" / "low.wav", dtype="int16")
    assert rate == 16000 and live.shape == offline.shape == (16000, 2)
    # soxr resamples the hop-sized blocks of the stream and the 4 s blocks of separate to the same samples
    np.testing.assert_array_equal(live, offline)


def test_stream_refuses_bad_input_before_writing_anything(bundle, tmp_path, capsys):
    (tmp_path / "live").mkdir()
    sf.write(tmp_path / "live" / "low.wav", np.zeros(10), 8000)
    before = (tmp_path / "live" / "low.wav").read_bytes()
    run = subprocess.run(stream_command(bundle, tmp_path / "live"), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 2 and "low.wav exist(s); pass --overwrite" in run.stderr
    assert (tmp_path / "live" / "low.wav").read_bytes() == before
    run = subprocess.run(stream_command(bundle, tmp_path / "junk"), input="not audio at all" * 100,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "standard input: cannot read audio" in run.stderr and "--raw-rate" in run.stderr
    assert not (tmp_path / "junk").exists()
    assert main(["stream", str(bundle), "--out", str(tmp_path / "x"), "--normalize", "track"]) == 2
    assert "--normalize track needs the whole track" in capsys.readouterr().err
    assert main(["stream", str(bundle), "--out", str(tmp_path / "x"), "--raw-channels", "2"]) == 2
    assert "needs --raw-rate" in capsys.readouterr().err
    assert main(["stream", str(bundle), "--out", str(tmp_path / "x"), "--in", str(tmp_path / "nope")]) == 2
    assert "no such file or pipe" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_terminated_stream_leaves_readable_stems_of_what_it_finished(bundle, tmp_path):
    fifo = tmp_path / "in.pcm"
    os.mkfifo(fifo)
    proc = subprocess.Popen(stream_command(bundle, tmp_path / "live", "--in", str(fifo), "--raw-rate", "8000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tone = (np.sin(np.arange(8000) / 3.0) * 8000).astype(np.int16).tobytes()
    with open(fifo, "wb") as writer:  # opens when the stream opens its end
        writer.write(tone)
        writer.flush()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (tmp_path / "live" / "low.wav").exists():
            time.sleep(0.2)
        # all but the last chunk and hop of the second written (float samples: 4 bytes each), the rest waiting
        # for input that has not come; the stream is blocked reading the pipe when it is told to stop
        while time.monotonic() < deadline and (tmp_path / "live" / "low.wav").stat().st_size < 4 * 5000:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after" in err
    written, rate = sf.read(tmp_path / "live" / "low.wav")
    assert rate == 8000 and 5000 - 44 // 4 <= len(written) < 8000  # the header is complete; the tail is not there
