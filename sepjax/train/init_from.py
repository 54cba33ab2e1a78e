"""A new run that starts from trained weights (`--train.init-from`), with parameters frozen by path pattern.

Weights come from a bundle folder, a shipped model's name, or an official SepReformer checkpoint (`.pth`,
`.safetensors` or `.npz`, converted on the fly as `sepjax convert` does). Arrays are matched by their path in the model
(`.sep_blocks.intra.attn.qkv.weight`, `.stats[...]` for normalisation statistics). By default every array must
match in path and shape; `--train.init-partial` loads the ones that do and reports the rest (for example the
split layer of a model with another number of stems), which keep their fresh initialisation.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from sepjax.inference.bundle import load_bundle
from sepjax.inference.convert import official_model
from sepjax.inference.pretrained import resolve_bundle
from sepjax.models.base import trainable
from sepjax.state_dicts import SUFFIXES as STATE_DICT_SUFFIXES
from sepjax.train.config import ConfigError


@dataclass
class InitReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    """Paths in both models whose shapes differ, with the two shapes."""
    missing: list[str] = field(default_factory=list)
    """Paths of the new model that the source does not have."""
    unused: list[str] = field(default_factory=list)
    """Paths of the source that the new model does not have."""

    def lines(self) -> list[str]:
        out = [f"initialised {len(self.loaded)} array(s) from {self.source}"]
        out += [f"  shape differs, left as initialised: {p}" for p in self.mismatched]
        out += [f"  not in {self.source}, left as initialised: {p}" for p in self.missing]
        out += [f"  in {self.source} only, not used: {p}" for p in self.unused]
        return out


def array_paths(model: eqx.Module) -> dict[str, jax.Array]:
    """Every array of `model` by its path."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, eqx.is_array))[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def initialise_from(model: eqx.Module, source: str, *, partial: bool = False) -> tuple[eqx.Module, InitReport]:
    """`model` with the arrays of the bundle `source` wherever path and shape agree."""
    theirs, ours = array_paths(_source_model(source)), array_paths(model)
    report = InitReport(source)
    for path, leaf in ours.items():
        if path not in theirs:
            report.missing.append(path)
        elif theirs[path].shape != leaf.shape or theirs[path].dtype != leaf.dtype:
            report.mismatched.append(f"{path} {tuple(theirs[path].shape)} → {tuple(leaf.shape)}")
        else:
            report.loaded.append(path)
    report.unused = [p for p in theirs if p not in ours]
    if not partial and (report.mismatched or report.missing or report.unused):
        raise ConfigError(f"--train.init-from {source}: the model does not match (pass --train.init-partial to "
                          "load only the arrays that do):\n" + "\n".join(report.lines()[1:]))
    loaded = set(report.loaded)

    def take(path, leaf):
        key = jax.tree_util.keystr(path)
        return theirs[key] if key in loaded else leaf

    arrays, static = eqx.partition(model, eqx.is_array)
    return eqx.combine(jax.tree_util.tree_map_with_path(take, arrays), static), report


def _source_model(source: str) -> eqx.Module:
    path = Path(source)
    if path.suffix.lower() in STATE_DICT_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"--train.init-from {source}: no such checkpoint file")
        return official_model(path)
    return load_bundle(resolve_bundle(source)).model


def frozen_mask(model: eqx.Module, patterns: tuple[str, ...]) -> eqx.Module:
    """For each trainable parameter, a boolean array of its shape: True where its path matches one of the regular
    expressions `patterns`."""
    if not patterns:
        return jax.tree.map(lambda p: np.zeros(p.shape, bool), eqx.filter(model, trainable(model)))
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise ConfigError(f"--train.freeze {pattern!r}: not a regular expression ({err})") from err
    params = eqx.filter(model, trainable(model))
    mask = jax.tree_util.tree_map_with_path(
        lambda path, p: np.full(p.shape, any(c.search(jax.tree_util.keystr(path)) for c in compiled)), params)
    unmatched = [p for p, c in zip(patterns, compiled, strict=True)
                 if not any(c.search(path) for path in array_paths(params))]
    if unmatched:
        raise ConfigError(f"--train.freeze {unmatched}: no parameter path matches (paths look like "
                          f"{next(iter(array_paths(params)))!r})")
    return mask

