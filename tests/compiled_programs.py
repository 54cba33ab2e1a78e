"""Releasing the XLA executables that JAX keeps cached, and counting the memory mappings they hold.

Every cached XLA:CPU executable keeps about three memory mappings of its own code and data. A pytest worker
compiles thousands of programs over the suite (a paper-model test module alone adds some 30,000 mappings);
at the kernel's limit on mappings per process (vm.max_map_count, 65,530 by default) the next compile's mmap
fails and XLA segfaults.
"""

import gc
from pathlib import Path

import jax

MAPS = Path("/proc/self/maps")
LIMIT = Path("/proc/sys/vm/max_map_count")
DEFAULT_LIMIT = 65530  # Linux's default vm.max_map_count


def memory_mappings() -> int:
    """This process's memory mappings; 0 where /proc does not list them (off Linux)."""
    if not MAPS.exists():
        return 0
    with MAPS.open() as maps:
        return sum(1 for _ in maps)


def mapping_limit() -> int:
    """The kernel's limit on one process's memory mappings."""
    try:
        return int(LIMIT.read_text())
    except (OSError, ValueError):
        return DEFAULT_LIMIT


def release_compiled_programs() -> None:
    """Drop JAX's caches of traced and compiled programs, and the executables that only they referenced."""
    jax.clear_caches()
    gc.collect()


def release_past(share: float, limit: int | None = None) -> bool:
    """Release the compiled programs if this process holds more than `share` of the mapping limit (the
    kernel's, unless `limit`); returns whether it did."""
    if memory_mappings() <= share * (mapping_limit() if limit is None else limit):
        return False
    release_compiled_programs()
    return True
