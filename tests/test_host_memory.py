"""sepjax.train.host_memory: with its glibc settings a freed large block is reused, or faulted in huge pages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepjax.train.host_memory import accelerator_installed, with_huge_pages

PROBE = """
import ctypes, json, resource
from sepjax.train.host_memory import keep_host_memory
applied = keep_host_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def touch_and_free():  # what XLA:CPU does with a step's temporaries
    block = libc.malloc(128 * 2**20)
    ctypes.memset(block, 1, 128 * 2**20)
    libc.free(block)

touch_and_free()  # the first touch faults in either case
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    touch_and_free()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


# A step's temporaries can outgrow the 2 GiB an int-sized trim threshold holds (SepReformer-T's step faults in
# 9.6 GB a step). The block is never touched, so only address space is reserved, never memory.
LARGE_BLOCK_PROBE = """
import ctypes, json
from sepjax.train.host_memory import keep_host_memory
applied = keep_host_memory()
libc = ctypes.CDLL("libc.so.6")

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
block = libc.malloc(3 * 2**30)
libc.free(block)
print(json.dumps({"applied": applied, "allocated": bool(block), "heap": libc.mallinfo2().arena}))
"""


def probe(opt_in: str, huge_pages: bool = False, script: str = PROBE) -> dict:
    env = {"SEPJAX_KEEP_HOST_MEMORY": opt_in, "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    env = with_huge_pages(env) if huge_pages else env
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_kept_heap_memory_is_reused_without_page_faults():
    default, kept = probe("0"), probe("1")
    assert not default["applied"] and kept["applied"]
    pages = 4 * 128 * 2**20 // 4096
    assert default["faults"] > pages // 2  # glibc unmaps the block on free: every reuse faults it back in
    assert kept["faults"] < pages // 20, kept


def glibc_version() -> tuple[int, ...] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (ValueError, AttributeError, OSError):
        return None
    return tuple(map(int, version.split(".")[:2])) if name == "glibc" else None


@pytest.mark.skipif((glibc_version() or (0,)) < (2, 33), reason="mallinfo2 is glibc 2.33+")
def test_kept_heap_holds_a_freed_block_larger_than_2_gib():
    default, kept = probe("0", script=LARGE_BLOCK_PROBE), probe("1", script=LARGE_BLOCK_PROBE)
    if not (default["allocated"] and kept["allocated"]):
        pytest.skip("this system refuses 3 GiB of address space")
    assert not default["applied"] and kept["applied"]
    assert default["heap"] < 2**30  # glibc maps the block on its own and unmaps it on free
    assert kept["heap"] >= 3 * 2**30, kept  # freed, but kept for the next step instead of trimmed


def transparent_huge_pages_usable() -> bool:
    """Linux with THP not `never`, and glibc 2.35+ (the first with the malloc.hugetlb tunable)."""
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[never]" not in thp and (glibc_version() or (0,)) >= (2, 35)


@pytest.mark.skipif(not transparent_huge_pages_usable(), reason="needs transparent huge pages and glibc >= 2.35")
def test_huge_pages_fault_a_large_block_in_far_fewer_faults():
    default, huge = probe("0"), probe("0", huge_pages=True)
    assert not huge["applied"]  # glibc's own tunable, not the mallopt settings
    assert huge["faults"] < default["faults"] // 20, (huge, default)


def test_with_huge_pages_keeps_other_tunables_and_replaces_its_own():
    env = with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", "HOME": "/x"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "HOME": "/x"}
    assert with_huge_pages({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def test_jax_platforms_cpu_counts_as_cpu_only(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not accelerator_installed()
