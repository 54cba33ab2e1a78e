"""Run an experiment file: its CONFIG, overridden by command-line flags (tyro), then `train`."""

import importlib.util
import sys
from pathlib import Path

import tyro

from sepjax.errors import InputError, MissingInputError
from sepjax.train.compile_cache import compile_cache
from sepjax.train.config import ExperimentConfig
from sepjax.train.host_memory import keep_host_memory, relaunch_on_huge_pages
from sepjax.train.loop import TrainResult, train


def parse(default: ExperimentConfig, args: list[str] | None = None, description: str | None = None
          ) -> ExperimentConfig:
    # AvoidSubcommands: the model section takes the default's config type (dual-path or SepReformer) and its flags.
    return tyro.cli(ExperimentConfig, default=default, args=args, description=description,
                    config=(tyro.conf.AvoidSubcommands,))


def run_experiment(default: ExperimentConfig, args: list[str] | None = None, description: str | None = None
                   ) -> TrainResult:
    if args is None:  # an experiment file run as a program: its own command line
        relaunch_on_huge_pages()
    config = parse(default, args, description)
    keep_host_memory()
    with compile_cache(config.train.compile_cache):
        result = train(config)
    print(f"run directory: {result.run_dir}")
    if result.validations:
        last = result.validations[-1]
        print(f"last validation (step {last['step']}): SI-SDR {last['si_sdr']:.2f} dB, SDR {last['sdr']:.2f} dB")
    if result.bundle:
        print(f"model bundle: {result.bundle}")
    print(f"tensorboard --logdir {result.run_dir / 'tensorboard'}")
    return result


def load_experiment(path: str | Path):
    """Import an experiment file and return its module (it must define CONFIG)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such experiment file")
    spec = importlib.util.spec_from_file_location(f"sepjax_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, "CONFIG", None), ExperimentConfig):
        raise InputError(f"{path}: an experiment file must define CONFIG = ExperimentConfig(...)")
    return module
