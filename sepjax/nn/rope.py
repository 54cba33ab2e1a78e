"""Rotary position embeddings (RoFormer), in the half-rotation layout of eqx.nn.RotaryPositionalEmbedding."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def rope_tables(seq_len: int, head_dim: int, theta: float = 10_000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables of shape (seq_len, head_dim), built once at trace time."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(seq_len, dtype=np.float64), inv_freq)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(
    x: Float[Array, "*lead seq heads head_dim"], theta: float = 10_000.0
) -> Float[Array, "*lead seq heads head_dim"]:
    """Rotate each head's features by its position in the sequence."""
    seq_len, _, head_dim = x.shape[-3:]
    cos, sin = rope_tables(seq_len, head_dim, theta)
    cos = jnp.asarray(cos[:, None, :], dtype=x.dtype)
    sin = jnp.asarray(sin[:, None, :], dtype=x.dtype)
    half = head_dim // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def rotary_positions(q: Float[Array, "batch seq heads head_dim"], k: Float[Array, "batch seq heads head_dim"]):
    """The positional scheme of `MultiHeadAttention` for RoPE: q and k rotated, no score bias."""
    return apply_rope(q), apply_rope(k), None
