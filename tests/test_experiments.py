"""Every experiment file parses, agrees with its data layout, and `sepjax train` runs one end to end."""

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from fixtures import make_jacappella

from sepjax.cli import main
from sepjax.data.layouts import get_layout
from sepjax.inference.bundle import load_bundle
from sepjax.train.cli import load_experiment, parse
from sepjax.train.compile_cache import ENVIRONMENT, cache_folder, compile_cache

EXPERIMENTS = sorted((Path(__file__).parents[1] / "experiments").glob("*_sepreformer.py"))


def test_the_promised_experiments_exist():
    names = {p.stem for p in EXPERIMENTS}
    assert names >= {"chorales_sepreformer", "jacappella_sepreformer", "musdb_sepreformer", "wsj0_2mix_sepreformer"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_config_matches_its_layout_and_its_documented_command_parses(path):
    module = load_experiment(path)
    config = module.CONFIG
    layout = get_layout(config.data.layout, stems=config.data.stems)
    assert config.model.num_stems == len(layout.stems)
    assert config.model.in_channels == config.data.channels
    # Every command line its docstring shows runs this file, and its flags parse (tyro exits on an unknown one).
    commands = [line.split() for line in module.__doc__.splitlines() if f"experiments/{path.name}" in line]
    assert commands, f"{path.name}: its docstring shows no command line"
    for words in commands:
        flags = [w for w in words[words.index(f"experiments/{path.name}") + 1 :] if w not in ("[", "]", "...]")]
        flags = [w.strip("[]") for w in flags if w.strip("[]") != "..."]
        parsed = parse(config, flags)
        assert isinstance(parsed, type(config))


def test_command_line_overrides():
    config = parse(load_experiment(EXPERIMENTS[0]).CONFIG, ["--train.steps", "7", "--optim.lr", "0.01",
                                                             "--data.augment.remix-prob", "0.1"])
    assert (config.train.steps, config.optim.lr, config.data.augment.remix_prob) == (7, 0.01, 0.1)
    with pytest.raises(SystemExit):
        parse(config, ["--train.steps", "not-a-number"])


def test_sepjax_train_runs_an_experiment_file_and_caches_its_compiled_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    make_jacappella(tmp_path / "jc")
    cache = tmp_path / "cache"
    with jax.numpy_dtype_promotion("standard"):
        code = main(["train", "experiments/chorales_sepreformer.py", "--data.root", str(tmp_path / "jc"),
                     "--data.layout", "jacappella", "--data.stems", "soprano", "alto", "tenor", "bass",
                     "--data.segment-seconds", "0.5", "--train.steps", "2", "--train.steps-per-call", "2",
                     "--train.valid-every", "2", "--train.chunk-seconds", "0.5", "--train.run-dir",
                     str(tmp_path / "run"), "--log.no-progress", "--train.compile-cache", str(cache)])
    assert code == 0
    assert "model bundle:" in capsys.readouterr().out
    cached = {p.name for p in cache.iterdir()}
    assert [name for name in cached if name.startswith("jit__donating_steps-")]  # the next run loads, not compiles
    assert load_bundle(tmp_path / "run" / "bundle").stem_names == ("soprano", "alto", "tenor", "bass")
    # The cache was the run's alone: the caller's later compiles stay out of it.
    assert jax.config.jax_compilation_cache_dir is None
    least = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # would cache even a tiny compile
    try:
        jax.jit(lambda x: jnp.cumsum(jnp.sin(x) @ x.T, axis=0))(jnp.ones((64, 64))).block_until_ready()
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", least)
    assert {p.name for p in cache.iterdir()} == cached
    assert main(["train", str(tmp_path / "nope.py")]) == 2


def test_compile_cache_folder_comes_from_the_environment_first_and_is_off_for_an_empty_name(tmp_path, monkeypatch):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    with compile_cache("") as path:
        assert path is None and jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder("user") == tmp_path / "xdg" / "sepjax" / "jax"
    assert cache_folder("~/c") == Path.home() / "c"
    with compile_cache(str(tmp_path / "c")) as path:
        assert path == tmp_path / "c" and jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jax.config.jax_compilation_cache_dir is None
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "env"))
    with compile_cache(str(tmp_path / "other")) as path:
        assert path == tmp_path / "env"
        assert jax.config.jax_compilation_cache_dir is None  # JAX reads the variable itself
