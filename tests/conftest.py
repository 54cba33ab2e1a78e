"""Test-wide JAX settings: CPU, strict dtype promotion, float32 matmuls at full precision, and one
share of the cores per pytest-xdist worker."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Most of the suite is XLA compiling, one thread per process. Pinned, each worker's XLA sizes its thread pool
# to its own cores; unpinned, two workers' pools spin on the same cores and run slower than one process.
worker, workers = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if worker and hasattr(os, "sched_setaffinity"):
    cores = sorted(os.sched_getaffinity(0))
    if workers <= len(cores):
        # `% workers`: a worker that replaces a crashed one gets the next name (gw2 for gw0)
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % workers :: workers])

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
