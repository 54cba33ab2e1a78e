"""sepjax.train.host_memory: with its glibc settings a freed large block is reused, or faulted in huge pages; a
program relaunches itself on huge pages only from its entry point."""

import json
import subprocess
import sys

import pytest

from sepjax.train import host_memory
from sepjax.train.host_memory import (
    accelerator_installed,
    glibc_version,
    huge_pages_relaunch,
    transparent_huge_pages_usable,
    with_huge_pages,
)

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


@pytest.mark.skipif((glibc_version() or (0,)) < (2, 33), reason="mallinfo2 is glibc 2.33+")
def test_kept_heap_holds_a_freed_block_larger_than_2_gib():
    default, kept = probe("0", script=LARGE_BLOCK_PROBE), probe("1", script=LARGE_BLOCK_PROBE)
    if not (default["allocated"] and kept["allocated"]):
        pytest.skip("this system refuses 3 GiB of address space")
    assert not default["applied"] and kept["applied"]
    assert default["heap"] < 2**30  # glibc maps the block on its own and unmaps it on free
    assert kept["heap"] >= 3 * 2**30, kept  # freed, but kept for the next step instead of trimmed


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


RELAUNCHED = """
import json, os, sys
from sepjax.train.host_memory import relaunch_on_huge_pages
print(json.dumps({"pid": os.getpid(), "tunables": os.environ.get("GLIBC_TUNABLES")}), flush=True)
relaunch_on_huge_pages()
print(json.dumps({"pid": os.getpid(), "tunables": os.environ.get("GLIBC_TUNABLES"), "argv": sys.argv[1:],
                  "kept": os.environ.get("KEPT")}))
"""


@pytest.mark.skipif(not transparent_huge_pages_usable(), reason="needs transparent huge pages and glibc >= 2.35")
def test_a_program_relaunches_itself_once_on_huge_pages_keeping_pid_arguments_and_environment(tmp_path):
    script = tmp_path / "program.py"
    script.write_text(RELAUNCHED)
    env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin", "KEPT": "yes",
           "GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}
    out = subprocess.run([sys.executable, str(script), "--steps", "3"], capture_output=True, text=True, env=env,
                         check=True)
    lines = [json.loads(line) for line in out.stdout.strip().splitlines()]
    # The first process prints once and is replaced; the relaunched one prints twice and does not relaunch again.
    assert [line["tunables"] for line in lines] == ["glibc.malloc.arena_max=4"] + 2 * [
        "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"]
    assert len({line["pid"] for line in lines}) == 1
    assert lines[-1]["argv"] == ["--steps", "3"] and lines[-1]["kept"] == "yes"


@pytest.fixture
def huge_pages_possible(monkeypatch):
    monkeypatch.setattr(host_memory, "transparent_huge_pages_usable", lambda: True)
    monkeypatch.setattr(host_memory, "accelerator_installed", lambda: False)


def test_relaunch_reruns_the_same_command_line_with_the_tunable_added(huge_pages_possible, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")
    argv, env = huge_pages_relaunch({"HOME": "/x"}, ["python3", "-X", "dev", str(script), "--a", "1"], str(script))
    assert argv == [sys.executable, "-X", "dev", str(script), "--a", "1"]
    assert env == {"HOME": "/x", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


@pytest.mark.parametrize("env, script", [
    ({"SEPJAX_HUGE_PAGES": "0"}, "FILE"),  # the opt-out
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "FILE"),  # the user's own choice
    ({"PYTEST_CURRENT_TEST": "test_x.py::test"}, "FILE"),
    ({}, "-c"),  # python -c CODE cannot be started again from its arguments
    ({}, "-"),  # nor a program read from standard input
])
def test_relaunch_leaves_the_process_as_it_is(huge_pages_possible, tmp_path, env, script):
    path = tmp_path / "train.py"
    path.write_text("")
    script = str(path) if script == "FILE" else script
    assert huge_pages_relaunch(env, ["python3", script], script) is None


def test_relaunch_needs_huge_pages_and_no_accelerator(monkeypatch, tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")
    monkeypatch.setattr(host_memory, "accelerator_installed", lambda: True)
    monkeypatch.setattr(host_memory, "transparent_huge_pages_usable", lambda: True)
    assert huge_pages_relaunch({}, ["python3", str(script)], str(script)) is None
    monkeypatch.setattr(host_memory, "accelerator_installed", lambda: False)
    monkeypatch.setattr(host_memory, "transparent_huge_pages_usable", lambda: False)
    assert huge_pages_relaunch({}, ["python3", str(script)], str(script)) is None


class Relaunched(Exception):
    pass


def test_only_a_started_program_relaunches_never_a_call_from_python(monkeypatch, tmp_path, capsys):
    from sepjax.cli import main
    from sepjax.train import cli as train_cli
    from sepjax.train.config import ExperimentConfig

    def relaunch():
        raise Relaunched

    monkeypatch.setattr(host_memory, "relaunch_on_huge_pages", relaunch)
    monkeypatch.setattr(train_cli, "relaunch_on_huge_pages", relaunch)
    missing = str(tmp_path / "missing.py")
    assert main(["train", missing]) == 2  # a call with its arguments: the error, no relaunch
    monkeypatch.setattr(sys, "argv", ["sepjax", "train", missing])
    with pytest.raises(Relaunched):
        main()
    monkeypatch.setattr(sys, "argv", ["experiment.py", "--help"])
    with pytest.raises(Relaunched):
        train_cli.run_experiment(ExperimentConfig())


def test_a_notebook_kernel_or_interactive_session_is_never_relaunched(huge_pages_possible, monkeypatch, tmp_path):
    script = tmp_path / "ipykernel_launcher.py"
    script.write_text("")

    def execve(*args):
        raise Relaunched

    monkeypatch.setattr(host_memory.os, "execve", execve)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, "-m", "ipykernel_launcher"])
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    with pytest.raises(Relaunched):  # a program like this one would relaunch...
        host_memory.relaunch_on_huge_pages()
    monkeypatch.setitem(sys.modules, "IPython", object())
    host_memory.relaunch_on_huge_pages()  # ...but not inside a kernel
    monkeypatch.delitem(sys.modules, "IPython")
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    host_memory.relaunch_on_huge_pages()


def test_a_relaunch_that_cannot_start_leaves_the_run_going_as_it_started(huge_pages_possible, monkeypatch,
                                                                       tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text("")

    def execve(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(host_memory.os, "execve", execve)
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    monkeypatch.setattr(sys, "argv", [str(script)])
    monkeypatch.setattr(sys, "orig_argv", [sys.executable, str(script)])
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    host_memory.relaunch_on_huge_pages()
    assert "running without huge pages" in capsys.readouterr().err
