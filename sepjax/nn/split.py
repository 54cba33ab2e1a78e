"""GLU split layer: shared features (frames, dim) → one stream per stem (stems, frames, dim)."""

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray


class GLUSplit(eqx.Module):
    """σ(g)⊙v with [g, v] = W₁h, then W₂ expands to `num_stems` streams."""

    gate: eqx.nn.Linear
    expand: eqx.nn.Linear
    num_stems: int = eqx.field(static=True)

    def __init__(self, dim: int, num_stems: int, *, key: PRNGKeyArray):
        k_gate, k_expand = jax.random.split(key)
        self.gate = eqx.nn.Linear(dim, 2 * dim, key=k_gate)
        self.expand = eqx.nn.Linear(dim, dim * num_stems, key=k_expand)
        self.num_stems = num_stems

    def __call__(self, h: Float[Array, "frames dim"]) -> Float[Array, "stems frames dim"]:
        frames, dim = h.shape
        gate, value = (h @ self.gate.weight.T + self.gate.bias).reshape(frames, 2, dim).transpose(1, 0, 2)
        gated = jax.nn.sigmoid(gate) * value
        streams = gated @ self.expand.weight.T + self.expand.bias
        return streams.reshape(frames, self.num_stems, dim).transpose(1, 0, 2)
