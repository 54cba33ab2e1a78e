"""Atomic outputs: a file or a folder appears complete, or not at all."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sepjax.errors import OutputExistsError


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    return write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staged_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden staging folder beside `target`; when the block succeeds it becomes `target`.

    On an error the staging folder is removed and `target` is left as it was. An existing `target`
    is an error unless `overwrite`; then only that folder is replaced, and it is moved aside until the new one
    is in place, so an interruption at any point leaves one of the two whole.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target} exists and is not a folder; move it away")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous.", dir=target.parent))
            target.rename(previous / target.name)
            staging.rename(target)
            shutil.rmtree(previous)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_file(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target` for a writer that takes a path; on success it is renamed to
    `target`. An existing `target` is an error unless `overwrite`; on an error `target` is left as it was."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    if target.is_dir():
        raise OutputExistsError(f"{target} is a folder; name a file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
