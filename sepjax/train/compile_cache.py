"""JAX's persistent compilation cache for training runs.

A train step of the paper's SepReformer takes minutes to compile on a CPU. With the cache, a rerun or a
resumed run of the same experiment (the same model, batch shape and optimiser) loads the compiled
executables from disk. JAX keys every entry by the program, the JAX and XLA versions and the devices, so a
changed experiment compiles afresh and never picks up a stale executable.
"""

import os
from pathlib import Path

import jax

ENVIRONMENT = "JAX_COMPILATION_CACHE_DIR"


def user_cache_folder() -> Path:
    """sepjax/jax in the user's cache folder: $XDG_CACHE_HOME, else ~/.cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sepjax" / "jax"


def use_compile_cache(folder: str) -> Path | None:
    """Point JAX's persistent compilation cache at `folder` (`~` expanded; 'user': `user_cache_folder()`) and
    return it; with '' leave the cache off. A folder in JAX_COMPILATION_CACHE_DIR, which JAX reads itself,
    takes precedence."""
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT])
    if not folder:
        return None
    path = user_cache_folder() if folder == "user" else Path(folder).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path
