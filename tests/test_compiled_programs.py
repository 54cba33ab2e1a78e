"""The suite's workers release JAX's compiled programs, and their memory mappings, after every test module."""

import sys

import jax
import jax.numpy as jnp
import pytest
from compiled_programs import memory_mappings, release_compiled_programs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/maps")


def test_released_programs_give_back_their_memory_mappings():
    release_compiled_programs()
    before = memory_mappings()
    for n in range(1, 61):  # 60 programs, each its own compile
        jax.jit(lambda x, n=n: jnp.sin(x) * n + jnp.cos(x).sum())(jnp.ones((n,))).block_until_ready()
    grown = memory_mappings() - before
    assert grown >= 60  # each kept executable holds mappings of its own (about three)
    release_compiled_programs()
    assert memory_mappings() - before <= grown // 2  # what stays: mappings JAX and the allocator keep for reuse
