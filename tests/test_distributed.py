"""Scale-out: data-parallel steps over 4 fake CPU devices, and a two-process run on localhost."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def run_python(script: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_data_parallel_step_on_4_devices_equals_the_single_device_step():
    script = """
        import jax, numpy as np, equinox as eqx, optax
        from jax.sharding import Mesh, PartitionSpec
        from sepjax.data.synthetic import harmonic_stems
        from sepjax.losses import CompositeLossConfig
        from sepjax.models import build_model, get_config
        from sepjax.train import Batch, TrainState, batch_loss, train_step, train_steps
        from sepjax.train.distributed import replicate, shard_batch
        assert jax.device_count() == 4, jax.devices()
        optimizer = optax.sgd(0.1)
        batch = Batch.from_targets(harmonic_stems(4, 4, 1600, 8000))
        losses, grads, params = [], [], []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = Mesh(np.array(devices), ("data",))
            model = build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))
            initial = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
            state = replicate(TrainState.create(model, optimizer, key=jax.random.PRNGKey(1)), mesh)
            sharded = shard_batch(batch, mesh)
            assert len(sharded.mixture.sharding.device_set) == len(devices)
            g = eqx.filter_jit(eqx.filter_grad(lambda m, b: batch_loss(m, b, None, CompositeLossConfig())[0]))(
                state.model, sharded)
            grads.append([np.asarray(x) for x in jax.tree.leaves(g)])
            state, metrics = train_step(optimizer, state, sharded)
            losses.append(float(metrics["loss"]))
            params.append([np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))])
            # two steps in one call, each batch of the stack split over the devices, equal two single steps here
            stacked = shard_batch(Batch(*(np.stack([np.asarray(x)] * 2) for x in batch)), mesh, stacked=True)
            assert stacked.mixture.sharding.spec == PartitionSpec(None, "data")
            ends = []
            for in_one_call in (False, True):
                model = build_model(get_config("dual-path-sepreformer-tiny"), key=jax.random.PRNGKey(0))
                state = replicate(TrainState.create(model, optimizer, key=jax.random.PRNGKey(1)), mesh)
                if in_one_call:
                    state, _ = train_steps(optimizer, state, stacked)
                else:
                    for _ in range(2):
                        state, _ = train_step(optimizer, state, sharded)
                ends.append([np.asarray(x) for x in jax.tree.leaves(eqx.filter(state.model, eqx.is_inexact_array))])
            update = max(float(np.max(np.abs(a - b))) for a, b in zip(ends[0], initial))
            print(f"CALL_{len(devices)}", max(float(np.max(np.abs(a - b))) for a, b in zip(*ends)) / update)
        scale = max(float(np.max(np.abs(x))) for x in grads[0])
        print("LOSS", abs(losses[0] - losses[1]))
        print("GRAD", max(float(np.max(np.abs(a - b))) for a, b in zip(*grads)) / scale)
        update = max(float(np.max(np.abs(a - b))) for a, b in zip(params[0], initial))
        print("WORST", max(float(np.max(np.abs(a - b))) for a, b in zip(*params)) / update)
    """
    four_devices = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    proc = run_python(script, env={"XLA_FLAGS": four_devices, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    values = dict(line.split() for line in proc.stdout.strip().splitlines() if line.split()[0] in
                  ("LOSS", "GRAD", "WORST", "CALL_1", "CALL_4"))
    assert float(values["LOSS"]) < 1e-4
    assert float(values["GRAD"]) < 1e-3  # relative to the largest gradient (float32 reduction order)
    assert float(values["WORST"]) < 1e-3  # parameters after one SGD step, relative to the update
    assert float(values["CALL_1"]) < 1e-4 and float(values["CALL_4"]) < 1e-4  # train_steps ≡ train_step × 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_and_agree(tmp_path):
    script = f"""
        import json, os, sys, jax, numpy as np, equinox as eqx
        from pathlib import Path
        sys.path.insert(0, {str(HERE)!r})
        from train_helpers import tiny_experiment
        from sepjax.train.loop import replace, train
        config = tiny_experiment(Path({str(tmp_path)!r}), steps=4, checkpoint_every=4, valid_every=1000)
        config = replace(config, train={{"export_bundle": False, "steps_per_call": 2}}, data={{"batch_size": 2}},
                         log={{"log_every": 2, "audio_every": 4}})  # two calls of two steps
        result = train(config)
        assert jax.process_count() == 2
        leaves = jax.tree.leaves(eqx.filter(result.state.model, eqx.is_inexact_array))
        local = [np.asarray(x.addressable_data(0)) for x in leaves]
        out = Path({str(tmp_path)!r}) / f"params_{{jax.process_index()}}.json"
        out.write_text(json.dumps([float(np.sum(x)) for x in local] + [int(result.state.step)]))
    """
    from fixtures import make_jacappella

    make_jacappella(tmp_path / "jc")  # both processes index the same data
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "JAX_PLATFORMS": "cpu", "SEPJAX_COORDINATOR": f"127.0.0.1:{port}",
                                   "SEPJAX_NUM_PROCESSES": "2", "SEPJAX_PROCESS_ID": str(i)})
             for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    first, second = (json.loads((tmp_path / f"params_{i}.json").read_text()) for i in range(2))
    assert first[-1] == second[-1] == 4
    np.testing.assert_allclose(first, second, rtol=1e-6)
