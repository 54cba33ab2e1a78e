"""Train-step throughput: compile time, median step time and segments/s.

`first_call_s` is the first call's wall time (tracing, lowering, XLA's compile and the call's steps); `compile_s`
is that less the call's steps at the median step time.

    python benchmarks/train_step.py                          # sepjax only, the default configuration
    python benchmarks/train_step.py --compare-seed --seed-script PATH   # against the tutorial's code
    python benchmarks/train_step.py --model dual-path-sepreformer --dim 256 --ff 1024 --heads 8 --stems 5
    python benchmarks/train_step.py --model sepreformer-t    # the paper's model: 8 kHz, 4 s, 2 speakers
    python benchmarks/train_step.py --model sepreformer-b --remat   # B's activations need remat in 24 GiB
    python benchmarks/train_step.py --compare-seed --keep-host-memory   # both under sepjax.train.host_memory
    python benchmarks/train_step.py --compare-seed --huge-pages   # both with glibc's malloc on huge pages
    python benchmarks/train_step.py --model sepreformer-t --compare-official CHECKOUT --sepjax-huge-pages
        # sepjax on huge pages where `sepjax train` puts itself on them, the official code as it starts
    python benchmarks/train_step.py --compare-seed --steps-per-call 8   # sepjax's train_steps: 8 steps per call
    python benchmarks/train_step.py --model sepreformer-t --profile trace/ --cost-analysis   # where the time goes
    python benchmarks/train_step.py --model sepreformer-t --compare-official ~/src/SepReformer   # the official code

The yardstick for `--compare-seed` is the code of the SepReformer tutorial that sepjax's dual-path model
follows, as that tutorial writes it: a stand-alone JAX script that prints JSON, kept outside this repository
(beside it, in the workspace's `shared/bench/seed_tutorial.py`, the default `--seed-script`). Without it the
benchmark times sepjax alone.

Both implementations run as fresh subprocesses at the same configuration, alternating, for
`--rounds` rounds; the figures are medians over rounds. With `--steps-per-call N` sepjax times
`train_steps` calls of N steps (as `--train.steps-per-call N` trains) and a step is a call's time / N. The last
line printed is one JSON object
with both raw figures and `ratio` = sepjax segments/s ÷ seed segments/s. For the paper's
SepReformer (`sepreformer-t/-b/-l`) it also holds `params` (with the auxiliary heads, which train),
`params_without_aux` (the paper's count) and `macs_per_second`: multiply-accumulates
per second of input audio in one inference forward, from XLA's cost analysis (flops / 2), to compare
with the paper's 10.4 G/s (T) and 39.8 G/s (B).

`--profile DIR` traces one more step with `jax.profiler` into DIR (TensorBoard's profile plugin or Perfetto
opens it) and adds `op_time_shares`: the step's XLA operations by kind, with their share of all op time
(`xla_profile.py`). `--cost-analysis` compiles the step once more and adds XLA's count of its flops and bytes
accessed, the flops achieved per second at the measured step time and the flops per byte moved: a step far
below the CPU's peak at few flops per byte is bound by memory traffic, not arithmetic.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_SCRIPT = ROOT.parent / "shared" / "bench" / "seed_tutorial.py"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dual-path-sepreformer", help="registered model name")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--ff", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--stems", type=int, default=None, help="default: 4, or 2 for the paper's SepReformer")
    p.add_argument("--seconds", type=float, default=None, help="default: 1, or 4 for the paper's SepReformer")
    p.add_argument("--sr", type=int, default=None, help="default: 16000, or 8000 for the paper's SepReformer")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round, after one compile step")
    p.add_argument("--steps-per-call", type=int, default=1,
                   help="sepjax runs N steps per jitted call (train_steps); timed calls per round: ceil(steps / N)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--remat", action="store_true", help="rematerialise blocks in the backward pass")
    p.add_argument("--unroll", action="store_true",
                   help="the paper's SepReformer: apply each stage's repeated blocks one by one, not as a lax.scan")
    p.add_argument("--kernels", default="cpu_fast", choices=["reference", "cpu_fast"],
                   help="the model's kernels (sepjax.nn.kernels); the figures in docs/ use cpu_fast")
    p.add_argument("--keep-host-memory", action="store_true",
                   help="run both implementations with sepjax.train.host_memory's glibc settings")
    p.add_argument("--huge-pages", action="store_true",
                   help="run both implementations with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
                        "(sepjax.train.host_memory)")
    p.add_argument("--sepjax-huge-pages", action="store_true",
                   help="run sepjax as `sepjax train` runs itself: on huge pages where its relaunch applies them "
                        "(CPU only, glibc 2.35+, transparent huge pages); the other implementation as it starts")
    p.add_argument("--compare-seed", action="store_true")
    p.add_argument("--seed-script", type=Path, default=SEED_SCRIPT, help="the tutorial's code (see the docstring)")
    p.add_argument("--compare-official", type=Path, default=None, metavar="CHECKOUT",
                   help="time the official PyTorch code's step from this checkout too (the paper's models)")
    p.add_argument("--official-variant", default="SepReformer_Base_WSJ0", help="the checkout's models/ folder")
    p.add_argument("--official-python", type=Path, default=Path(sys.executable),
                   help="the Python with torch that runs the official step (default: this one)")
    p.add_argument("--official-threads", type=int, default=None, help="torch threads (default: every CPU)")
    p.add_argument("--profile", type=Path, default=None, help="trace one more step into this folder (first round)")
    p.add_argument("--cost-analysis", action="store_true",
                   help="add XLA's flops and bytes accessed per step (one more compile, first round)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--macs", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps_per_call < 1:
        p.error(f"--steps-per-call must be at least 1, got {args.steps_per_call}")
    paper = is_paper_model(args.model)
    if args.compare_official is not None:
        if not paper:
            p.error(f"--compare-official times the paper's SepReformer (sepreformer-t/-b/-l/-tiny), not {args.model}")
        if args.dtype != "float32":
            p.error("--compare-official compares float32 steps: the official code trains in float32")
        if args.steps_per_call != 1:
            p.error("--compare-official times one step per call, as the official code steps")
        if args.compare_seed:
            p.error("--compare-seed (the tutorial's dual-path code) and --compare-official exclude each other")
    for name, dual_path, speech in (("stems", 4, 2), ("seconds", 1.0, 4.0), ("sr", 16000, 8000)):
        if getattr(args, name) is None:
            setattr(args, name, speech if paper else dual_path)
    return args


def is_paper_model(name: str) -> bool:
    return name.startswith("sepreformer-") and not name.startswith("dual-path-sepreformer")


def model_overrides(args: argparse.Namespace) -> dict:
    if args.model.startswith("dual-path-sepreformer"):
        return dict(dim=args.dim, ff_dim=args.ff, heads=args.heads, chunk_size=args.chunk,
                    num_stems=args.stems, dtype=args.dtype, remat=args.remat, kernels=args.kernels)
    return dict(num_stems=args.stems, dtype=args.dtype, remat=args.remat, unroll=args.unroll, kernels=args.kernels)


def run_worker(args: argparse.Namespace) -> dict:
    """Time sepjax's train step in this process."""
    from sepjax.train.host_memory import keep_host_memory

    if args.keep_host_memory and not keep_host_memory(force=True):
        raise SystemExit("--keep-host-memory: glibc's mallopt is not available here")
    import jax
    import numpy as np

    from sepjax.losses import CompositeLossConfig
    from sepjax.models import build_model, count_params, get_config
    from sepjax.train import Batch, TrainState, make_optimizer, train_step, train_steps

    config = get_config(args.model, **model_overrides(args))
    model = build_model(config, key=jax.random.PRNGKey(0))
    optimizer = make_optimizer()
    state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(0))
    length = int(args.seconds * args.sr)
    rng = np.random.default_rng(0)
    targets = rng.standard_normal((args.batch, config.num_stems, config.in_channels, length)) * 0.1
    batch = Batch.from_targets(targets.astype(np.float32))
    # The paper's model trains with its speech loss: PIT −SI-SNR clamped at −30 dB, plus the auxiliary heads.
    loss = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0, si_sdr_cap_db=30.0) \
        if is_paper_model(args.model) else CompositeLossConfig()
    per_call = args.steps_per_call
    stacked = Batch(*(np.stack([np.asarray(x)] * per_call) for x in batch))  # the same batch for every step of a call

    def call(state):
        if per_call > 1:
            return train_steps(optimizer, state, stacked, loss)
        return train_step(optimizer, state, batch, loss)

    start = time.perf_counter()
    state, metrics = call(state)
    jax.block_until_ready(metrics)
    first_call_s = time.perf_counter() - start
    times = []
    for _ in range(-(-args.steps // per_call)):
        start = time.perf_counter()
        state, metrics = call(state)
        jax.block_until_ready(metrics)
        times.append((time.perf_counter() - start) / per_call)
    step_s = statistics.median(times)
    compile_s = first_call_s - per_call * step_s  # tracing, lowering and XLA's compile: the first call less its steps
    extra = {}
    if args.profile is not None:
        from xla_profile import op_time_shares  # beside this script, so on sys.path

        with jax.profiler.trace(str(args.profile)):
            state, metrics = call(state)
            jax.block_until_ready(metrics)
        extra["op_time_shares"] = [{"op": op, "seconds": round(seconds, 4), "share": round(share, 4)}
                                   for op, seconds, share in op_time_shares(args.profile)]
    # XLA's cost analysis counts a while loop's body once, so the paper model's flops are counted on its
    # unrolled graph (the same function; `unroll` only changes how it is lowered).
    counted = build_model(config.replace(unroll=True), key=jax.random.PRNGKey(0)) if is_paper_model(args.model) \
        else model
    if args.cost_analysis:
        import equinox as eqx
        from xla_profile import step_costs

        costs = step_costs(eqx.filter_jit(call).lower(TrainState.create(counted, optimizer, key=jax.random.PRNGKey(0))
                                                      ).compile())
        extra["flops_per_step"] = costs["flops"] / per_call
        extra["bytes_per_step"] = costs["bytes_accessed"] / per_call
        extra["flops_per_byte"] = round(costs["flops_per_byte"], 3)
        extra["achieved_gflops_per_s"] = round(costs["flops"] / per_call / step_s / 1e9, 2)
    if args.macs:
        extra["macs_per_second"] = inference_macs(counted, batch.mixture[0]) / args.seconds
    if is_paper_model(args.model):  # the paper counts parameters without the auxiliary heads
        import equinox as eqx

        from sepjax.models import SepReformer
        heads_off = eqx.filter_eval_shape(SepReformer, config.replace(aux_heads=False), key=jax.random.PRNGKey(0))
        extra["params_without_aux"] = count_params(heads_off)
    return {**extra, "impl": "sepjax", "model": args.model, "params": count_params(model),
            "first_call_s": round(first_call_s, 3), "compile_s": round(compile_s, 3), "step_s": round(step_s, 4),
            "segments_per_s": round(args.batch / step_s, 3), "device": str(jax.devices()[0])}


def inference_macs(model, mixture) -> float:
    """Multiply-accumulates of one inference forward, from XLA's cost analysis (flops / 2)."""
    import equinox as eqx
    import jax

    params, static = eqx.partition(model, eqx.is_array)
    costs = jax.jit(lambda p, x: eqx.combine(p, static)(x)).lower(params, mixture).compile().cost_analysis()
    costs = costs[0] if isinstance(costs, list) else costs
    return float(costs["flops"]) / 2


def official_command(args: argparse.Namespace) -> list[str]:
    """The command that times the official code's step (`official_train_step.py`) at this benchmark's
    configuration; it stops here, before any timing, if the checkout or the configuration does not fit."""
    from official_train_step import OfficialCheckoutError, model_file  # beside this script, so on sys.path

    from sepjax.models import get_config
    from sepjax.models.sepreformer.official import ConversionError, official_model_section

    try:
        model_file(args.compare_official, args.official_variant)
        section = official_model_section(get_config(args.model, **model_overrides(args)))
    except (OfficialCheckoutError, ConversionError) as error:
        raise SystemExit(str(error)) from error
    if not args.official_python.exists():
        raise SystemExit(f"--official-python {args.official_python} does not exist")
    probe = subprocess.run([str(args.official_python), "-c", "import torch, loguru"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"--official-python {args.official_python} cannot import torch and loguru, which the official "
                         f"code needs ({last}): pip install -e '.[torch]' in that environment")
    return [str(args.official_python), str(Path(__file__).with_name("official_train_step.py")),
            "--checkout", str(args.compare_official.resolve()), "--variant", args.official_variant,
            "--model-section", json.dumps(section), "--seconds", str(args.seconds), "--sr", str(args.sr),
            "--batch", str(args.batch), "--steps", str(args.steps),
            *(["--threads", str(args.official_threads)] if args.official_threads else [])]


def last_json(cmd: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def process_environments(args: argparse.Namespace, environ) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of sepjax's processes and of the implementation it is compared with."""
    from sepjax.train.host_memory import accelerator_installed, transparent_huge_pages_usable, with_huge_pages

    others = with_huge_pages(environ) if args.huge_pages else dict(environ)
    as_trained = args.sepjax_huge_pages and transparent_huge_pages_usable() and not accelerator_installed()
    return (with_huge_pages(environ) if as_trained else others), others


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return {}
    shared = ["--seconds", str(args.seconds), "--sr", str(args.sr), "--batch", str(args.batch),
              "--steps", str(args.steps)]
    ours_cmd = [sys.executable, __file__, "--worker", "--model", args.model, "--dim", str(args.dim),
                "--ff", str(args.ff), "--heads", str(args.heads), "--chunk", str(args.chunk),
                "--stems", str(args.stems), "--dtype", args.dtype, "--kernels", args.kernels,
                "--steps-per-call", str(args.steps_per_call),
                *shared,
                *(["--remat"] if args.remat else []), *(["--unroll"] if args.unroll else []),
                *(["--keep-host-memory"] if args.keep_host_memory else [])]
    # The seed runs as written; with --keep-host-memory it gets the same allocator settings first.
    seed_launch = [sys.executable, str(args.seed_script)] if not args.keep_host_memory else [
        sys.executable, "-c", "import runpy, sys; from sepjax.train.host_memory import keep_host_memory; "
        "assert keep_host_memory(force=True); sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')", str(args.seed_script)]
    seed_cmd = [*seed_launch, "--dim", str(args.dim), "--ff", str(args.ff),
                "--heads", str(args.heads), "--chunk", str(args.chunk), "--stems", str(args.stems), *shared]
    if args.compare_seed and not args.seed_script.exists():
        raise SystemExit(f"--compare-seed needs the tutorial's code at {args.seed_script}; pass --seed-script")
    official_cmd = official_command(args) if args.compare_official is not None else None
    ours_env, env = process_environments(args, os.environ)
    from sepjax.train.host_memory import HUGE_PAGES

    sepjax_on_huge_pages = HUGE_PAGES in ours_env.get("GLIBC_TUNABLES", "").split(":")
    ours, seed, official = [], [], []
    for r in range(args.rounds):
        # The MACs and the cost analysis need one more compile each, and the trace one more step: first round only.
        first_round_only = [*(["--macs"] if is_paper_model(args.model) else []),
                            *(["--profile", str(args.profile)] if args.profile is not None else []),
                            *(["--cost-analysis"] if args.cost_analysis else [])]
        ours.append(last_json(ours_cmd + (first_round_only if r == 0 else []), ours_env))
        print(f"round {r + 1}: sepjax {ours[-1]['segments_per_s']} seg/s", end="", flush=True)
        if args.compare_seed:
            seed.append(last_json(seed_cmd, env))
            print(f", seed {seed[-1]['segments_per_s']} seg/s", end="", flush=True)
        if official_cmd is not None:
            official.append(last_json(official_cmd, env))
            print(f", official {official[-1]['segments_per_s']} seg/s", end="", flush=True)
            if official[-1]["params"] != ours[-1]["params"]:
                raise SystemExit(f"the official model has {official[-1]['params']:,} parameters and sepjax's "
                                 f"{ours[-1]['params']:,}: the configurations differ, so the times do not compare")
        print()

    def summary(runs: list[dict], keys=("first_call_s", "compile_s", "step_s", "segments_per_s")) -> dict:
        return {k: statistics.median(r[k] for r in runs) for k in keys}

    internal = ("worker", "compare_seed", "seed_script", "profile", "compare_official", "official_python")
    result = {"config": {k: v for k, v in vars(args).items() if k not in internal},
              "params": ours[0]["params"], "device": ours[0]["device"], "sepjax": summary(ours)}
    result["sepjax"]["huge_pages"] = sepjax_on_huge_pages
    if "macs_per_second" in ours[0]:
        result["params_without_aux"] = ours[0]["params_without_aux"]
        result["macs_per_second"] = ours[0]["macs_per_second"]
        result["segments_per_s"] = result["sepjax"]["segments_per_s"]
    for key in ("op_time_shares", "flops_per_step", "bytes_per_step", "flops_per_byte", "achieved_gflops_per_s"):
        if key in ours[0]:
            result[key] = ours[0][key]
    if args.compare_seed:
        result["seed"] = summary(seed)
        result["ratio"] = round(result["sepjax"]["segments_per_s"] / result["seed"]["segments_per_s"], 3)
    if official:
        result["official"] = summary(official, ("first_step_s", "step_s", "segments_per_s"))
        result["official"].update(threads=official[0]["threads"], torch=official[0]["torch"],
                                  variant=official[0]["variant"])
        result["ratio"] = round(result["sepjax"]["segments_per_s"] / result["official"]["segments_per_s"], 3)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
