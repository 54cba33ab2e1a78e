"""Separation speed and memory, and the framewise SDR against museval.

    python benchmarks/separate.py [--seconds 180 --default-seconds 20 --rss-minutes 1 10]

- rtf_tiny / rtf_default: seconds of compute per second of audio for chunked inference on a
  stereo 44.1 kHz signal (stereo 4-stem models, 2 s chunks, 25% overlap, batch 2). The default
  model is timed on --default-seconds of audio (inference is linear in length: pass 180 for the
  full 3 minutes, which takes a long while on a CPU).
- rss_1min_mb / rss_10min_mb: peak resident memory of a fresh process running `separate_file` (the
  block-streaming file path) on 1- and 10-minute stereo 44.1 kHz wav files with the tiny model.
  The target is at most 10% growth.
- sdr_speedup_vs_museval: museval v4's time over sepjax's `bss_sdr_v4` time (compiled) on the same
  --seconds-long 4-source stereo track; the target is at least 50x.

The last line is JSON with those keys.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100


def stereo_test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tones = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)])
    return (0.2 * tones + 0.05 * rng.standard_normal(tones.shape)).astype(np.float32)


def model(name: str):
    import jax

    from sepjax.models import build_model, get_config

    return build_model(get_config(name, in_channels=2, out_channels=2, num_stems=4), key=jax.random.PRNGKey(0))


def inference_config():
    from sepjax.inference.separate import InferenceConfig

    return InferenceConfig(chunk=2 * SR, overlap=0.25, batch_size=2)


def real_time_factor(name: str, seconds: float) -> float:
    from sepjax.inference.separate import BatchedModel, separate_array

    run = BatchedModel(model(name), 2)
    warm = stereo_test_signal(4.0)
    separate_array(run, warm, inference_config())  # compile outside the timing
    audio = stereo_test_signal(seconds)
    start = time.perf_counter()
    separate_array(run, audio, inference_config())
    return (time.perf_counter() - start) / seconds


def rss_worker(minutes: float) -> None:
    """Write a `minutes`-long wav in blocks, separate it from disk, print peak RSS (MB)."""
    import soundfile as sf

    from sepjax.inference.separate import BatchedModel
    from sepjax.inference.separate_files import OutputOptions, separate_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.wav"
        with sf.SoundFile(str(path), "w", SR, 2, subtype="PCM_16") as f:
            for i in range(int(minutes * 6)):
                f.write(stereo_test_signal(10.0, seed=i).T)
        run = BatchedModel(model("dual-path-sepreformer-tiny"), 2)
        names = ("s1", "s2", "s3", "s4")
        separate_file(run, 2, 2, SR, names, path, Path("out"), inference_config(),
                      OutputOptions(Path(tmp) / "separated", bits="16"))
    print(json.dumps({"minutes": minutes, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def sdr_speedup(seconds: float) -> tuple[float, float, float]:
    import jax.numpy as jnp

    from sepjax.metrics import bss_sdr_v4

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import museval_reference  # museval's metrics without its ffmpeg-dependent package import

    rng = np.random.default_rng(1)
    refs = np.stack([stereo_test_signal(seconds, seed=s) for s in range(4)])
    ests = (refs + 0.1 * rng.standard_normal(refs.shape)).astype(np.float32)
    start = time.perf_counter()
    sdr_ref = museval_reference.framewise_sdr(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), SR, SR)
    museval_s = time.perf_counter() - start
    ours = bss_sdr_v4(jnp.asarray(ests), jnp.asarray(refs), SR).block_until_ready()  # compile
    start = time.perf_counter()
    ours = np.asarray(bss_sdr_v4(jnp.asarray(ests), jnp.asarray(refs), SR))
    sepjax_s = time.perf_counter() - start
    gap = float(np.max(np.abs(ours - np.nanmedian(sdr_ref, axis=1))))
    return museval_s, sepjax_s, gap


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--default-seconds", type=float, default=20.0)
    p.add_argument("--rss-minutes", type=float, nargs=2, default=(1.0, 10.0))
    p.add_argument("--rss-worker", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_worker is not None:
        rss_worker(args.rss_worker)
        return
    rss = {}
    for minutes in args.rss_minutes:
        out = subprocess.run([sys.executable, __file__, "--rss-worker", str(minutes)], capture_output=True, text=True,
                             check=True)
        rss[minutes] = json.loads(out.stdout.strip().splitlines()[-1])["rss_mb"]
        print(f"peak RSS separating {minutes:g} min from disk: {rss[minutes]:.0f} MB", flush=True)
    museval_s, sepjax_s, gap = sdr_speedup(args.seconds)
    print(f"framewise SDR on {args.seconds:g} s, 4 stereo sources: museval {museval_s:.2f} s, sepjax {sepjax_s:.3f} s "
          f"(max difference {gap:.1e} dB)", flush=True)
    rtf_tiny = real_time_factor("dual-path-sepreformer-tiny", args.seconds)
    print(f"RTF tiny ({args.seconds:g} s): {rtf_tiny:.3f}", flush=True)
    rtf_default = real_time_factor("dual-path-sepreformer", args.default_seconds)
    print(f"RTF default ({args.default_seconds:g} s): {rtf_default:.3f}", flush=True)
    small, large = args.rss_minutes
    print(json.dumps({
        "rtf_tiny": round(rtf_tiny, 3), "rtf_default": round(rtf_default, 3),
        "rss_1min_mb": round(rss[small], 1), "rss_10min_mb": round(rss[large], 1),
        "rss_growth": round(rss[large] / rss[small] - 1, 4),
        "sdr_speedup_vs_museval": round(museval_s / sepjax_s, 1),
        "museval_s": round(museval_s, 2), "sepjax_sdr_s": round(sepjax_s, 4),
        "seconds": args.seconds, "default_seconds": args.default_seconds,
    }))


if __name__ == "__main__":
    main()
