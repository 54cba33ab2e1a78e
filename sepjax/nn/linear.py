"""The one way sepjax applies an `eqx.nn.Linear`: to a whole `(..., in_features)` array in one matmul, no vmap."""

import equinox as eqx
from jaxtyping import Array, Float

from sepjax.nn.kernels import Kernels
from sepjax.nn.kernels.projection import project


def linear(layer: eqx.nn.Linear, x: Float[Array, "*lead in_features"], *, kernels: Kernels = "reference"
           ) -> Float[Array, "*lead out_features"]:
    """`x @ Wᵀ + b` in x's dtype; `kernels="cpu_fast"` takes the weight gradient of `kernels.projection.project`."""
    weight = layer.weight.astype(x.dtype)
    y = project(x, weight) if kernels == "cpu_fast" else x @ weight.T
    return y if layer.bias is None else y + layer.bias.astype(x.dtype)
