"""Test-wide settings: JAX on the CPU with strict dtype promotion and float32 matmuls at full precision, XLA's
lowest LLVM optimisation level, per pytest-xdist worker one share of the cores, one numba cache and one
compilation cache, and JAX's compiled programs released after every test module."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is bound by XLA compiles of tiny models: LLVM at its lowest optimisation level compiles a paper-model
# train step ~30% faster. Child processes (CLI runs, notebook kernels, distributed workers) inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# Most of the suite is XLA compiling, one thread per process. Pinned, each worker's XLA sizes its thread pool
# to its own cores; unpinned, two workers' pools spin on the same cores and run slower than one process.
worker, workers = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if worker and hasattr(os, "sched_setaffinity"):
    cores = sorted(os.sched_getaffinity(0))
    if workers <= len(cores):
        # `% workers`: a worker that replaces a crashed one gets the next name (gw2 for gw0)
        os.sched_setaffinity(0, cores[int(worker.removeprefix("gw")) % workers :: workers])
if worker:
    # numba's on-disk cache of librosa's gufuncs is not safe to fill from two processes at once (numba#10128:
    # a worker can load another's half of a kernel and segfault), so each worker gets its own cache folder.
    numba_cache = Path(os.environ.get("NUMBA_CACHE_DIR") or Path(tempfile.gettempdir()) / "sepjax-numba-cache")
    os.environ["NUMBA_CACHE_DIR"] = str(numba_cache / worker)

# `sepjax train` keeps compiled steps in the user's cache folder; the suite's go to a folder of its own, one per
# worker (two processes must not fill one cache folder at once).
os.environ["XDG_CACHE_HOME"] = str(Path(tempfile.gettempdir()) / "sepjax-test-cache" / (worker or "main"))

import jax  # noqa: E402
import pytest  # noqa: E402
from compiled_programs import release_compiled_programs, release_past  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(autouse=True, scope="module")
def programs_released_after_each_module():
    """A worker would otherwise keep every program it compiled, and their memory mappings, until it reaches the
    kernel's limit and XLA segfaults (tests/compiled_programs.py). A module's programs serve that module."""
    yield
    release_compiled_programs()


@pytest.fixture(autouse=True)
def programs_released_at_half_the_mapping_limit():
    """One module can compile enough to come near the limit on its own: past half of it, release after the test."""
    yield
    release_past(0.5)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


class CompileCounter:
    """Counts XLA compilations, through JAX's public monitoring events."""

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


@pytest.fixture
def compiles():
    import jax.monitoring

    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)
