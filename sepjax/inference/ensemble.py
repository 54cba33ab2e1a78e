"""Ensembles: several bundles with the same stems and rate separate each chunk, and their estimates are combined.

The combination runs per chunk inside the streaming path (`separate.ModelFn`), so memory stays bounded:
`mean` (optionally weighted) or `median` over the models, sample by sample.
"""

from collections.abc import Sequence
from typing import Literal

import numpy as np

from sepjax.errors import InputError
from sepjax.inference.bundle import Bundle
from sepjax.inference.separate import ModelFn

Combine = Literal["mean", "median"]


def check_compatible(bundles: Sequence[Bundle], names: Sequence[str]) -> None:
    """Every bundle must have the first one's stems, sample rate and channels; the error names the odd one."""
    first = bundles[0]
    for bundle, name in zip(bundles[1:], names[1:], strict=True):
        for what, mine, theirs in (("stems", bundle.stem_names, first.stem_names),
                                   ("sample rate", bundle.sample_rate, first.sample_rate),
                                   ("input channels", bundle.config.in_channels, first.config.in_channels),
                                   ("output channels", bundle.config.out_channels, first.config.out_channels)):
            if mine != theirs:
                raise InputError(f"cannot ensemble {name} with {names[0]}: {what} {mine} vs {theirs}")


class EnsembleModel:
    """The `combine` of several chunk functions' estimates; `weights` (mean only) default to equal."""

    def __init__(self, model_fns: Sequence[ModelFn], combine: Combine = "mean",
                 weights: Sequence[float] | None = None):
        if len(model_fns) < 2:
            raise InputError(f"an ensemble needs at least two models, got {len(model_fns)}")
        if combine not in ("mean", "median"):
            raise InputError(f"--ensemble {combine!r}: choose mean or median")
        if weights is not None:
            if combine != "mean":
                raise InputError("--weights apply to --ensemble mean")
            if len(weights) != len(model_fns) or min(weights) < 0 or sum(weights) <= 0:
                raise InputError(f"--weights {list(weights)}: need {len(model_fns)} non-negative weights, not all 0")
        self.model_fns, self.combine = list(model_fns), combine
        w = np.ones(len(model_fns)) if weights is None else np.asarray(weights, np.float64)
        self.weights = w / w.sum()

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        outputs = np.stack([np.asarray(fn(chunks), np.float64) for fn in self.model_fns])
        if self.combine == "median":
            return np.median(outputs, axis=0).astype(np.float32)
        return np.tensordot(self.weights, outputs, axes=1).astype(np.float32)
