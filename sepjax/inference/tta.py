"""Test-time augmentation: average the model over transforms it should be equivariant to.

`TTAModel` wraps a chunk function (`separate.ModelFn`), so it runs inside the streaming path chunk by chunk
and memory stays bounded. For each combination of the chosen transforms T (all 2^k of them), the chunk is
transformed, separated, and the estimates transformed back, T⁻¹(f(T(x))), and the results are averaged:

    polarity   x → −x          (estimates negated back)
    swap       left ⇄ right    (stereo input; the estimates' channels swapped back)

A model that is exactly equivariant gives what it gives alone; an identity model returns its input exactly.
The cost is 2^k model calls per chunk.
"""

import itertools

import numpy as np

from sepjax.errors import InputError
from sepjax.inference.separate import ModelFn

TRANSFORMS = ("polarity", "swap")


def parse_tta(spec: str | None) -> tuple[str, ...]:
    """'polarity,swap' → ('polarity', 'swap'); empty or None → ()."""
    if not spec:
        return ()
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown:
        raise InputError(f"--tta {spec!r}: unknown transform(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(TRANSFORMS)}")
    return names


class TTAModel:
    """The mean of `model_fn` over every combination of `transforms`, each undone on the estimates."""

    def __init__(self, model_fn: ModelFn, transforms: tuple[str, ...], in_channels: int, out_channels: int):
        if "swap" in transforms and (in_channels != 2 or out_channels != 2):
            raise InputError(f"--tta swap needs a stereo model; this one has {in_channels} input and "
                             f"{out_channels} output channel(s)")
        self.model_fn, self.transforms = model_fn, transforms
        self.combinations = list(itertools.product((False, True), repeat=len(transforms)))

    def __call__(self, chunks: np.ndarray) -> np.ndarray:
        total = None
        for flags in self.combinations:
            active = {name for name, on in zip(self.transforms, flags, strict=True) if on}
            x = chunks
            if "polarity" in active:
                x = -x
            if "swap" in active:
                x = x[:, ::-1]
            y = np.asarray(self.model_fn(np.ascontiguousarray(x)), np.float64)
            if "swap" in active:
                y = y[:, :, ::-1]
            if "polarity" in active:
                y = -y
            total = y if total is None else total + y
        return (total / len(self.combinations)).astype(np.float32)
