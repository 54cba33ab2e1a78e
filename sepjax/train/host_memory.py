"""Opt-in process settings for long CPU runs: keep freed host memory, so XLA:CPU stops re-faulting its buffers.

XLA:CPU allocates each step's temporaries with `malloc`. glibc serves large blocks with `mmap` and
unmaps them on `free`, so every step pays page faults and kernel zero-filling for its whole working
set. With one arena, no `mmap` for large blocks and no trimming, freed blocks stay in the heap and the next
step reuses them. Compiles take longer (one arena for all compiler threads) and the process keeps its peak
resident memory. It sped up the dual-path model's one-step calls, but SepReformer-T's step ran no faster with
it, though its page faults stopped, so it is off unless `SEPJAX_KEEP_HOST_MEMORY=1`.

The lighter alternative: glibc (2.35+) backs its large blocks with transparent huge pages, so the same
working set faults in 2 MiB pages instead of 4 KiB ones, freed memory still goes back to the system and
compile times stay the same; SepReformer-T's step ran 7-12% faster. glibc reads GLIBC_TUNABLES when a
process starts, so it goes into a process's environment before it starts: `make demo` sets it, and
`with_huge_pages` builds such an environment for subprocesses (the benchmark's `--huge-pages`).
docs/performance.md has the measured effect of both.
"""

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
from collections.abc import Mapping

OPT_IN = "SEPJAX_KEEP_HOST_MEMORY"
# mallopt parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm60-plugin", "libtpu", "libtpu-nightly")


def accelerator_installed() -> bool:
    """True where a JAX GPU/TPU plugin is installed and JAX_PLATFORMS does not pin the CPU."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return False
    for name in ACCELERATOR_PLUGINS:
        try:
            importlib.metadata.version(name)
            return True
        except importlib.metadata.PackageNotFoundError:
            continue
    return False


def keep_host_memory(force: bool = False) -> bool:
    """Apply the glibc settings above if `SEPJAX_KEEP_HOST_MEMORY=1` (or `force`); returns whether applied.

    Call it first thing in a process, before JAX starts its threads. It does nothing off Linux/glibc or
    where an accelerator plugin is installed (host buffers are small there).
    """
    wanted = force or os.environ.get(OPT_IN, "0") == "1"
    if not wanted or not sys.platform.startswith("linux") or accelerator_installed():
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # A trim threshold of -1 (SIZE_MAX inside glibc) disables trimming, as mallopt(3) documents: any finite
    # threshold an int can carry (under 2 GiB) would still return any larger freed block to the system.
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)


HUGE_PAGES = "glibc.malloc.hugetlb=1"


def with_huge_pages(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` whose GLIBC_TUNABLES asks malloc for transparent huge pages; other tunables are kept."""
    kept = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.malloc.hugetlb=")]
    return {**env, "GLIBC_TUNABLES": ":".join([*kept, HUGE_PAGES])}
