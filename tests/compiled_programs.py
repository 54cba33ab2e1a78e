"""Releasing the XLA executables that JAX keeps cached, and counting the memory mappings they hold.

Every cached XLA:CPU executable keeps about three memory mappings of its own code and data. A pytest worker
compiles thousands of programs over the suite; at the kernel's limit on mappings per process
(vm.max_map_count, 65,530 by default) the next compile's mmap fails and XLA segfaults.
"""

import gc
from pathlib import Path

import jax

MAPS = Path("/proc/self/maps")


def memory_mappings() -> int:
    """This process's memory mappings (Linux)."""
    with MAPS.open() as maps:
        return sum(1 for _ in maps)


def release_compiled_programs() -> None:
    """Drop JAX's caches of traced and compiled programs, and the executables that only they referenced."""
    jax.clear_caches()
    gc.collect()
