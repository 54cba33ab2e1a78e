"""Kernels for XLA:CPU, chosen by a model config's `kernels="cpu_fast"` when the model is built.

Each computes the same function as a plain reference implementation in the layer that uses it, with a
hand-written derivative or an arithmetic that XLA:CPU runs faster; tests/test_kernels.py checks values and
gradients against the reference. The default, `kernels="reference"`, builds the graph a GPU or TPU user runs.

- `projection.project`: `x @ Wᵀ` whose weight gradient transposes the narrower operand (reference: `x @ W.T`
  in `sepjax.nn.linear.linear`).
- `attention.head_major_attention`: softmax attention in head-major layout with a hand-written backward, with an
  optional score bias and dropout of the weights (reference: `jax.nn.dot_product_attention`, or with dropout the
  einsum-softmax-einsum path, in `sepjax.nn.attention.MultiHeadAttention`).
- `sine.snake`: SNAKE with a range-reduced polynomial sine and a hand-written JVP (reference:
  `sepjax.nn.snake.snake_reference`).
"""

from typing import Literal

Kernels = Literal["reference", "cpu_fast"]
"""`reference`: plain JAX, the same graph on every backend. `cpu_fast`: the kernels of this package."""
