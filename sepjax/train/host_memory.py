"""Process settings for long CPU runs, so XLA:CPU stops paying a page fault per 4 KiB of its buffers every step.

XLA:CPU allocates each step's temporaries with `malloc`. glibc serves large blocks with `mmap` and
unmaps them on `free`, so every step pays page faults and kernel zero-filling for its whole working
set. With one arena, no `mmap` for large blocks and no trimming, freed blocks stay in the heap and the next
step reuses them. Compiles take longer (one arena for all compiler threads) and the process keeps its peak
resident memory. It sped up the dual-path model's one-step calls, but SepReformer-T's step ran no faster with
it, though its page faults stopped, so it is off unless `SEPJAX_KEEP_HOST_MEMORY=1`.

The lighter alternative: glibc (2.35+) backs its large blocks with transparent huge pages, so the same
working set faults in 2 MiB pages instead of 4 KiB ones, freed memory still goes back to the system and
compile times stay the same; SepReformer-T's step ran 6-18% faster. glibc reads GLIBC_TUNABLES only when a
process starts, so `relaunch_on_huge_pages` re-executes a program under it: `sepjax train` and the experiment
files do that first thing on a CPU-only machine (`SEPJAX_HUGE_PAGES=0`, or any `glibc.malloc.hugetlb` value in
GLIBC_TUNABLES, leaves the process as it started). `with_huge_pages` builds such an environment for
subprocesses (the benchmark's `--huge-pages`). docs/performance.md has the measured effect of both.
"""

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

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


HUGE_PAGES_SWITCH = "SEPJAX_HUGE_PAGES"
"""`SEPJAX_HUGE_PAGES=0` keeps `relaunch_on_huge_pages` from re-executing the process."""


def glibc_version() -> tuple[int, ...] | None:
    """(major, minor) of the C library when it is glibc, else None."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (ValueError, AttributeError, OSError):
        return None
    return tuple(map(int, version.split(".")[:2])) if name == "glibc" else None


def transparent_huge_pages_usable() -> bool:
    """Linux with transparent huge pages not `never`, and glibc 2.35+ (the first with the malloc.hugetlb
    tunable)."""
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in thp and (glibc_version() or (0,)) >= (2, 35)


def huge_pages_relaunch(env: Mapping[str, str], orig_argv: Sequence[str] | None, script: str
                        ) -> tuple[list[str], dict[str, str]] | None:
    """The command line and environment that rerun this program on huge pages, or None where it runs as it is:
    after an opt-out or a choice of its own in `env`, under pytest, where an accelerator is installed, where
    the C library or kernel cannot give huge pages, or where the program cannot be started again (`script`,
    the program's `sys.argv[0]`, is `-c` or standard input rather than a file)."""
    if env.get(HUGE_PAGES_SWITCH, "1") == "0" or "glibc.malloc.hugetlb=" in env.get("GLIBC_TUNABLES", ""):
        return None
    if "PYTEST_CURRENT_TEST" in env or not orig_argv or not sys.executable or not Path(script).is_file():
        return None
    if accelerator_installed() or not transparent_huge_pages_usable():
        return None
    return [sys.executable, *orig_argv[1:]], with_huge_pages(env)


def relaunch_on_huge_pages() -> None:
    """Re-execute this program with glibc's malloc on transparent huge pages, where `huge_pages_relaunch` says
    so; otherwise return. The process keeps its pid, arguments, environment (plus the tunable) and open files.

    Call it from a program's entry point only, before it does any work: it never returns where it relaunches.
    An interactive interpreter or a notebook's kernel is never relaunched: its state would be lost.
    """
    if hasattr(sys, "ps1") or "IPython" in sys.modules:
        return
    plan = huge_pages_relaunch(os.environ, getattr(sys, "orig_argv", None), sys.argv[0] if sys.argv else "")
    if plan is None:
        return
    argv, env = plan
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as err:  # the interpreter cannot be started again: the run goes on as it started
        print(f"sepjax: running without huge pages ({argv[0]}: {err.strerror})", file=sys.stderr)
