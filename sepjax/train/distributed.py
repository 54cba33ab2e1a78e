"""Scale-out on JAX's own runtime: multi-host initialisation, a data-parallel mesh, sharded batches.

Multi-host runs set, for every process:
    SEPJAX_COORDINATOR=host:port  SEPJAX_NUM_PROCESSES=N  SEPJAX_PROCESS_ID=i
(or rely on `jax.distributed.initialize()`'s own cluster detection with SEPJAX_DISTRIBUTED=auto).
"""

import os

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sepjax.errors import InputError

_initialized = False


def initialize_from_env() -> bool:
    """Call `jax.distributed.initialize` if the environment asks for it; returns whether it did."""
    global _initialized
    if _initialized:
        return True
    coordinator = os.environ.get("SEPJAX_COORDINATOR")
    if coordinator:
        # Cross-process collectives for CPU devices; ignored by GPU and TPU backends. Querying the
        # backend here would initialise it, which must not happen before jax.distributed.initialize.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=int(os.environ["SEPJAX_NUM_PROCESSES"]),
                                   process_id=int(os.environ["SEPJAX_PROCESS_ID"]))
        _initialized = True
    elif os.environ.get("SEPJAX_DISTRIBUTED") == "auto":
        jax.distributed.initialize()
        _initialized = True
    if _initialized:
        # The first collective sets up the cross-process context, which must happen within 30 s on
        # every process; do it now, while the processes are in step, not at some later barrier
        # (orbax's, or the first train step) that they may reach minutes apart.
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("sepjax: processes started")
    return _initialized


def data_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, named `data`."""
    return Mesh(np.array(jax.devices()), ("data",))


def replicate(tree, mesh: Mesh):
    """Place every array of `tree` on all devices of the mesh."""
    return eqx.filter_shard(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch, mesh: Mesh, *, stacked: bool = False):
    """This process's share of the global batch → global arrays sharded on `data` along the batch axis:
    axis 0, or axis 1 when `stacked` puts one batch per step ahead of it (`train_steps`)."""
    sharding = NamedSharding(mesh, PartitionSpec(None, "data") if stacked else PartitionSpec("data"))

    def put(x):
        x = np.asarray(x)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)


def per_process_batch(global_batch: int) -> int:
    """Examples each process loads; the global batch must split evenly over processes and devices."""
    devices, processes = jax.device_count(), jax.process_count()
    if global_batch % devices:
        raise InputError(f"batch size {global_batch} does not divide over {devices} devices")
    return global_batch // processes
