"""Variants of one model's train step, compiled in one process and timed in alternation.

    python benchmarks/train_step_ab.py --model sepreformer-t \\
        --variant scan '{"unrolled_rates": 0}' --variant cpu_fast '{}'

A VM's speed drifts by 10-30% within minutes, more than many changes are worth; fresh processes timed one after
another mix the two. Here every variant is traced and compiled first, then the rounds step them in turn, so
each round's times come from the same minute, and `paired_ratio` (the median over rounds of a variant's step
time over the first variant's in that round) cancels the drift. A variant is a JSON object with any of:

- `overrides`: model config fields, as `sepjax.models.get_config(model, **overrides)` takes them;
- `compiler_options`: XLA options added to the train step's (`sepjax.train.step.CPU_COMPILER_OPTIONS` on a CPU);
- `unrolled_rates`: `sepjax.models.sepreformer.stages.CPU_FAST_UNROLLED_RATES` while the variant's model is built.

The step and its data are `train_step.py`'s: 8 kHz, 4 s, batch 2, PIT −SI-SNR with the auxiliary heads for the
paper's SepReformer, `kernels="cpu_fast"` unless a variant overrides it. The last line is JSON.
"""

import argparse
import json
import statistics
import time

VARIANT_KEYS = {"overrides", "compiler_options", "unrolled_rates"}


def build_variant(model: str, spec: dict):
    """The model of one variant: `model`'s config with `kernels="cpu_fast"` and the variant's overrides, its
    stages unrolled as `unrolled_rates` says (the module's setting is restored afterwards)."""
    import jax

    from sepjax.models import build_model, get_config
    from sepjax.models.sepreformer import stages

    config = get_config(model, **{"kernels": "cpu_fast", **spec.get("overrides", {})})
    default_rates = stages.CPU_FAST_UNROLLED_RATES
    stages.CPU_FAST_UNROLLED_RATES = spec.get("unrolled_rates", default_rates)
    try:
        return build_model(config, key=jax.random.PRNGKey(0))
    finally:
        stages.CPU_FAST_UNROLLED_RATES = default_rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sepreformer-t")
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "JSON"), required=True,
                   help="a name and a JSON object (see above); give two or more")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--sr", type=int, default=8000)
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args()
    variants = []
    for name, spec in args.variant:
        try:
            variants.append((name, json.loads(spec)))
        except json.JSONDecodeError as error:
            p.error(f"variant {name!r}: {spec!r} is not JSON ({error})")
        if not isinstance(variants[-1][1], dict):
            p.error(f"variant {name!r}: {spec!r} is not a JSON object")
    if len(variants) < 2:
        p.error("give two or more --variant")
    unknown = [name for name, spec in variants if set(spec) - VARIANT_KEYS]
    if unknown:
        p.error(f"variants {unknown}: the keys are overrides, compiler_options and unrolled_rates")

    import equinox as eqx
    import jax
    import numpy as np

    from sepjax.losses import CompositeLossConfig
    from sepjax.train import Batch, TrainState, make_optimizer
    from sepjax.train import step as train_step_module

    paper = args.model.startswith("sepreformer-")
    rng = np.random.default_rng(0)
    length = int(args.seconds * args.sr)
    optimizer = make_optimizer()
    loss = CompositeLossConfig(permutation_invariant=True, stft_weight=0.0, si_sdr_cap_db=30.0) if paper \
        else CompositeLossConfig()
    runs = {}
    for name, spec in variants:
        model = build_variant(args.model, spec)
        config = model.config
        state = TrainState.create(model, optimizer, key=jax.random.PRNGKey(0))
        targets = rng.standard_normal((args.batch, config.num_stems, config.in_channels, length)) * 0.1
        batch = Batch.from_targets(targets.astype(np.float32))
        options = dict(train_step_module.CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}
        options.update(spec.get("compiler_options", {}))

        def update(batch, state):
            return train_step_module._update(batch, state, optimizer, loss, 0.0)

        step = eqx.filter_jit(update, donate="all-except-first", compiler_options=options)
        start = time.perf_counter()
        lowered = step.lower(batch, state)
        traced = time.perf_counter()
        lowered.compile()
        compiled = time.perf_counter()
        state, metrics = step(batch, state)  # the first call also loads what was just compiled
        jax.block_until_ready(metrics)
        print(f"{name}: trace and lower {traced - start:.1f} s, XLA compile {compiled - traced:.1f} s", flush=True)
        runs[name] = {"step": step, "state": state, "batch": batch, "times": [],
                      "trace_lower_s": round(traced - start, 2), "compile_s": round(compiled - traced, 2)}
    for round_ in range(args.rounds):
        for run in runs.values():
            start = time.perf_counter()
            run["state"], metrics = run["step"](run["batch"], run["state"])
            jax.block_until_ready(metrics)
            run["times"].append(time.perf_counter() - start)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {r['times'][-1]:.2f} s" for n, r in runs.items()), flush=True)
    first = next(iter(runs.values()))["times"]
    result = {name: {"step_s": round(statistics.median(r["times"]), 3), "trace_lower_s": r["trace_lower_s"],
                     "compile_s": r["compile_s"],
                     "paired_ratio": round(statistics.median(t / f for t, f in zip(r["times"], first, strict=True)), 3)}
              for name, r in runs.items()}
    print(json.dumps({"model": args.model, "rounds": args.rounds, "device": str(jax.devices()[0]),
                      "variants": dict(variants), "results": result}))


if __name__ == "__main__":
    main()
