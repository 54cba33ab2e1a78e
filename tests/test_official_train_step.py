"""`benchmarks/train_step.py --compare-official`: what it asks the official code to build, and what it refuses
before anything is timed. The timing itself needs torch and a checkout of the official code, which the
benchmark's user brings (docs/performance.md records a run)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from official_train_step import model_file  # noqa: E402
from train_step import official_command, parse_args, process_environments  # noqa: E402

from sepjax.models import get_config  # noqa: E402
from sepjax.models.sepreformer.official import official_model_section  # noqa: E402
from sepjax.train import host_memory  # noqa: E402


@pytest.fixture
def python_with_torch(tmp_path) -> Path:
    """An interpreter for the official step that imports torch and loguru: stand-ins of both beside it."""
    site = tmp_path / "site"
    for name in ("torch", "loguru"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    launcher = tmp_path / "python-with-torch"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


@pytest.fixture
def checkout(tmp_path):
    """The one file of an official checkout that the benchmark checks for before it starts."""
    (tmp_path / "models" / "SepReformer_Base_WSJ0").mkdir(parents=True)
    (tmp_path / "models" / "SepReformer_Base_WSJ0" / "model.py").write_text("")
    return tmp_path


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_the_official_step_builds_the_model_the_sepjax_step_builds(checkout, python_with_torch):
    args = parse_args(["--model", "sepreformer-t", "--compare-official", str(checkout),
                       "--official-python", str(python_with_torch)])
    cmd = official_command(args)
    assert cmd[0] == str(python_with_torch) and cmd[1].endswith("official_train_step.py")
    section = json.loads(option(cmd, "--model-section"))
    assert section == official_model_section(get_config("sepreformer-t"))
    assert section["module_feature_projector"]["out_channels"] == 64  # T's F
    assert (option(cmd, "--seconds"), option(cmd, "--sr"), option(cmd, "--batch")) == ("4.0", "8000", "2")
    assert option(cmd, "--checkout") == str(checkout.resolve())

    other = parse_args(["--model", "sepreformer-tiny", "--stems", "3", "--compare-official", str(checkout),
                        "--official-threads", "1", "--official-python", str(python_with_torch)])
    cmd = official_command(other)
    assert json.loads(option(cmd, "--model-section"))["num_spks"] == 3 and option(cmd, "--threads") == "1"


def test_a_missing_checkout_or_python_stops_the_benchmark_before_it_times_anything(tmp_path, checkout):
    with pytest.raises(SystemExit, match=r"nowhere/models/SepReformer_Base_WSJ0/model\.py does not exist"):
        official_command(parse_args(["--model", "sepreformer-t", "--compare-official", str(tmp_path / "nowhere")]))
    with pytest.raises(SystemExit, match="SepReformer_Large_DM_WSJ0/model.py does not exist"):
        official_command(parse_args(["--model", "sepreformer-t", "--compare-official", str(checkout),
                                     "--official-variant", "SepReformer_Large_DM_WSJ0"]))
    with pytest.raises(SystemExit, match="--official-python .*nopython does not exist"):
        official_command(parse_args(["--model", "sepreformer-t", "--compare-official", str(checkout),
                                     "--official-python", str(tmp_path / "nopython")]))
    assert model_file(checkout, "SepReformer_Base_WSJ0").name == "model.py"


def test_an_official_python_without_torch_stops_the_benchmark_at_once(tmp_path, checkout):
    without = tmp_path / "python-without-torch"  # an interpreter whose import of torch fails
    without.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "import sys; sys.exit(\'No module named torch\')"\n')
    without.chmod(0o755)
    with pytest.raises(SystemExit, match=r"cannot import torch and loguru.*No module named torch.*\[torch\]"):
        official_command(parse_args(["--model", "sepreformer-t", "--compare-official", str(checkout),
                                     "--official-python", str(without)]))


def test_a_config_the_official_code_cannot_build_is_refused(checkout, monkeypatch):
    import train_step

    monkeypatch.setattr(train_step, "model_overrides", lambda args: {"norm": "group"})
    with pytest.raises(SystemExit, match="norm='group'"):
        official_command(parse_args(["--model", "sepreformer-t", "--compare-official", str(checkout)]))


@pytest.mark.parametrize("argv, message", [
    (["--model", "dual-path-sepreformer"], "paper's SepReformer"),
    (["--model", "sepreformer-t", "--dtype", "bfloat16"], "float32"),
    (["--model", "sepreformer-t", "--steps-per-call", "4"], "one step per call"),
    (["--model", "sepreformer-t", "--compare-seed"], "exclude each other"),
])
def test_comparisons_that_would_not_compare_are_refused(checkout, capsys, argv, message):
    with pytest.raises(SystemExit):
        parse_args([*argv, "--compare-official", str(checkout)])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("usable", [True, False])
def test_sepjax_huge_pages_runs_sepjax_as_sepjax_train_runs_itself_and_the_other_side_as_it_starts(
        monkeypatch, usable):
    monkeypatch.setattr(host_memory, "transparent_huge_pages_usable", lambda: usable)
    monkeypatch.setattr(host_memory, "accelerator_installed", lambda: False)
    environ = {"HOME": "/x", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    ours, others = process_environments(parse_args(["--sepjax-huge-pages"]), environ)
    assert others == environ
    expected = "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1" if usable else "glibc.malloc.arena_max=2"
    assert ours == {"HOME": "/x", "GLIBC_TUNABLES": expected}
    ours, others = process_environments(parse_args(["--huge-pages"]), environ)
    assert ours == others == {"HOME": "/x", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert process_environments(parse_args([]), environ) == (environ, environ)
