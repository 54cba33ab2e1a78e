"""JAX's persistent compilation cache for training runs.

A train step of the paper's SepReformer takes minutes to compile on a CPU. With the cache, a rerun or a
resumed run of the same experiment (the same model, batch shape and optimiser) loads the compiled
executables from disk. JAX keys every entry by the program, the JAX and XLA versions and the devices, so a
changed experiment compiles afresh and never picks up a stale executable.

The cache is a process-wide JAX setting. `compile_cache` turns it on for one run and puts the previous
setting back afterwards, so a program (or a test session) that calls `sepjax train` in-process keeps its
own compiles out of the run's cache folder.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

ENVIRONMENT = "JAX_COMPILATION_CACHE_DIR"


def user_cache_folder() -> Path:
    """sepjax/jax in the user's cache folder: $XDG_CACHE_HOME, else ~/.cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sepjax" / "jax"


def cache_folder(folder: str) -> Path | None:
    """The cache folder that `folder` names: `~` expanded, 'user' for `user_cache_folder()`, '' for none. A
    folder in JAX_COMPILATION_CACHE_DIR, which JAX reads itself, takes precedence."""
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT])
    if not folder:
        return None
    return user_cache_folder() if folder == "user" else Path(folder).expanduser()


@contextlib.contextmanager
def compile_cache(folder: str) -> Iterator[Path | None]:
    """JAX's persistent compilation cache in `cache_folder(folder)` inside the block, and the previous setting
    after it. JAX opens its cache once, at the first compile that looks for it; resetting it on both sides of
    the block makes the next compile open the folder the setting names then."""
    path = cache_folder(folder)
    if path is None or os.environ.get(ENVIRONMENT):
        yield path
        return
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(path))
    compilation_cache.reset_cache()
    try:
        yield path
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
        compilation_cache.reset_cache()
