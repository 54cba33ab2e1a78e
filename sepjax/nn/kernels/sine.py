"""SNAKE with a vectorised sine and a hand-written JVP, for XLA:CPU.

XLA's CPU `sin` is a scalar libm-style call, and SNAKE evaluates one sine per activation forward and one more
for its derivatives, over the widest tensors of the model (the feed-forward's ff_dim). A range-reduced odd
polynomial (|error| < 3e-7) vectorises and runs about 9x faster there. The JVP keeps sin(2αx) and puts every
per-channel factor on the tangent, so the backward reads x, sin(2αx) and the output (which the next
projection keeps anyway) and no other full-size array.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

_TWO_PI_HI = 6.28125  # 2π split in two for an exact first reduction step (Cody–Waite)
_TWO_PI_LO = 2 * np.pi - 6.28125
_SIN_TAYLOR = (-1 / 39916800, 1 / 362880, -1 / 5040, 1 / 120, -1 / 6, 1.0)


def fast_sin(y: Float[Array, "..."]) -> Float[Array, "..."]:
    """sin(y) by reduction to [−π/2, π/2] and a degree-11 Taylor polynomial."""
    work = y.astype(jnp.float32)
    turns = jnp.round(work * (1 / (2 * np.pi)))
    r = (work - turns * _TWO_PI_HI) - turns * _TWO_PI_LO
    half_pi = np.pi / 2
    r = jnp.where(r > half_pi, np.pi - r, jnp.where(r < -half_pi, -np.pi - r, r))
    r2 = r * r
    poly = jnp.full_like(r, _SIN_TAYLOR[0])
    for c in _SIN_TAYLOR[1:]:
        poly = poly * r2 + c
    return (r * poly).astype(y.dtype)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def snake(x: Float[Array, "*batch features"], alpha: Float[Array, " features"], eps: float
          ) -> Float[Array, "*batch features"]:
    """x + sin²(αx) / (α + eps)."""
    return x + jnp.square(fast_sin(alpha * x)) / (alpha + eps)


@snake.defjvp
def _snake_jvp(eps, primals, tangents):
    x, alpha = primals
    dx, dalpha = tangents
    inv_denom = 1 / (alpha + eps)
    out = snake(x, alpha, eps)
    sin_2y = fast_sin(2 * alpha * x)
    excess = out - x  # sin²(αx)/(α+eps), without another sine
    # ∂/∂x = 1 + sin(2αx)·α/(α+eps): the per-channel factor goes on the tangent, so only sin(2αx) is kept.
    # ∂/∂α = (x·sin(2αx) − sin²(αx)/(α+eps)) / (α+eps); the last per-channel factor goes on the tangent, so
    # α's gradient reduces one full-size product and scales the (features,) sum.
    d_alpha = (x * sin_2y - excess) * (dalpha * inv_denom)
    return out, dx + sin_2y * (dx * (alpha * inv_denom)) + d_alpha
