"""Chunking under a memory budget: sizes parse, the choice fits XLA's own account of the compiled model, an
impossible budget says what it needs, and a budgeted `sepjax separate` stays within it in a real process."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import soundfile as sf

from sepjax.errors import InputError
from sepjax.inference.bundle import save_bundle
from sepjax.inference.memory_budget import choose_chunking, compiled_bytes, parse_size
from sepjax.models import build_model, get_config

RATE = 44100
STEREO = get_config("dual-path-sepreformer-tiny", num_stems=2, in_channels=2, out_channels=2)


@pytest.fixture(scope="module")
def stereo():
    return build_model(STEREO, key=jax.random.PRNGKey(0))


def test_sizes_parse_and_bad_ones_are_named():
    assert parse_size("4GB") == 4 * 10**9 and parse_size("512 MiB") == 512 * 2**20 and parse_size("1.5gb") == 1.5e9
    assert parse_size("1000") == 1000
    for bad in ("lots", "4 parsecs", "0GB"):
        with pytest.raises(InputError, match="--max-memory"):
            parse_size(bad)


def test_the_choice_is_the_longest_chunk_then_largest_batch_that_fits(stereo):
    # Memory grows with the chunk (the inter-chunk attention) and the batch; measure the candidates directly.
    one_s = {b: compiled_bytes(stereo, b, 2, RATE) for b in (1, 2)}
    two_s = compiled_bytes(stereo, 1, 2, 2 * RATE)
    assert two_s > one_s[2] > one_s[1]
    budget = (one_s[2] + min(two_s, 2 * one_s[2])) // 2  # fits 1 s at batch 2, not 2 s at batch 1
    choice = choose_chunking(stereo, 2, RATE, budget, 2 * RATE, batch_sizes=(2, 1))
    assert (choice.chunk, choice.batch_size) == (RATE, 2) and choice.bytes <= budget
    assert choose_chunking(stereo, 2, RATE, two_s, 2 * RATE, batch_sizes=(1,)).chunk == 2 * RATE
    with pytest.raises(InputError, match=r"needs \d+ MB for even 1 chunk\(s\) of 0.25 s, over the memory budget"):
        choose_chunking(stereo, 2, RATE, 1000, 2 * RATE)


PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], capture_output=True).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def peak_rss(args) -> int:
    run = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "sepjax.cli", *args],
                         capture_output=True, text=True, check=True)
    code, peak = run.stdout.split()
    assert code == "0", args
    return int(peak)


def test_a_budgeted_separation_stays_within_its_budget(tmp_path, stereo):
    save_bundle(tmp_path / "bundle", stereo, ["a", "b"], RATE, chunk_seconds=2.0)
    t = np.arange(12 * RATE) / RATE
    sf.write(tmp_path / "song.wav", 0.3 * np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1),
             RATE)
    common = ["separate", str(tmp_path / "bundle"), str(tmp_path / "song.wav")]
    budget = 600 * 10**6
    floor = peak_rss([*common, "--out", str(tmp_path / "small"), "--chunk-seconds", "0.25", "--batch-size", "1"])
    budgeted = peak_rss([*common, "--out", str(tmp_path / "budget"), "--max-memory", "600MB"])
    unbounded = peak_rss([*common, "--out", str(tmp_path / "big"), "--chunk-seconds", "2", "--batch-size", "2"])
    assert budgeted - floor <= budget  # the runtime, the file and the smallest model call are the floor
    assert unbounded - floor > budget  # the bundle's own chunk in batches of 2 would not have fitted
