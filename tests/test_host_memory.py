"""sepjax.host_memory: with its glibc settings a freed large block is reused, not re-faulted."""

import json
import subprocess
import sys

import pytest

from sepjax.host_memory import accelerator_installed

PROBE = """
import ctypes, json, resource
from sepjax.host_memory import keep_host_memory
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


def probe(opt_in: str) -> dict:
    env = {"SEPJAX_KEEP_HOST_MEMORY": opt_in, "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_kept_heap_memory_is_reused_without_page_faults():
    default, kept = probe("0"), probe("1")
    assert not default["applied"] and kept["applied"]
    pages = 4 * 128 * 2**20 // 4096
    assert default["faults"] > pages // 2  # glibc unmaps the block on free: every reuse faults it back in
    assert kept["faults"] < pages // 20, kept


def test_jax_platforms_cpu_counts_as_cpu_only(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert not accelerator_installed()
