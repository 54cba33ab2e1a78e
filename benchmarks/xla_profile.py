"""Where a jitted step's time goes: a `jax.profiler` trace summarised by XLA operation, and XLA's cost analysis.

    from xla_profile import op_time_shares, step_costs
    with jax.profiler.trace("trace/"):
        step()
    print(op_time_shares("trace/"))          # [(op, seconds, share of all op time), ...], largest first

The trace (open it in TensorBoard's profile plugin or Perfetto) holds one event per executed XLA thunk on the
runtime's worker threads. Numbered instances of one kind ("ynn_fusion.12", "ynn_fusion.40") are summed under
the kind's name, so that the table says which kind of work dominates: YNNPACK's dot and convolution fusions,
layout copies and transposes, elementwise fusions, and so on.
"""

import collections
import gzip
import json
import re
from pathlib import Path

# Container events that span the ops they run, rather than doing work of their own.
_CONTAINERS = ("ThunkExecutor", "SlinkyThreadPool", "Wait", "wait")
_INSTANCE = re.compile(r"(\.\d+)+$")


def op_time_shares(trace_dir: str | Path, top: int = 15) -> list[tuple[str, float, float]]:
    """(op kind, seconds, share of all op time) for the newest trace under `trace_dir`, largest first."""
    traces = sorted(Path(trace_dir).rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not traces:
        raise FileNotFoundError(f"{trace_dir}: no *.trace.json.gz (was jax.profiler.trace used?)")
    with gzip.open(traces[-1], "rt") as f:
        events = json.load(f)["traceEvents"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    totals: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or threads.get((e["pid"], e["tid"]), "python") == "python":
            continue
        name = e["name"]
        if name.startswith(_CONTAINERS) or name.startswith("$"):
            continue
        totals[_INSTANCE.sub("", name)] += e["dur"]
    whole = sum(totals.values()) or 1.0
    return [(name, us / 1e6, us / whole) for name, us in totals.most_common(top)]


def step_costs(compiled) -> dict[str, float]:
    """Flops and bytes accessed of one compiled executable (`jax.stages.Compiled`, or Equinox's wrapper of one),
    from XLA's cost analysis after fusion."""
    compiled = getattr(compiled, "compiled", compiled)
    costs = compiled.cost_analysis()
    costs = costs[0] if isinstance(costs, list) else costs
    flops, moved = float(costs.get("flops", 0.0)), float(costs.get("bytes accessed", 0.0))
    return {"flops": flops, "bytes_accessed": moved, "flops_per_byte": flops / moved if moved else float("nan")}
