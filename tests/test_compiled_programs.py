"""The suite's workers release JAX's compiled programs, and their memory mappings, after every test module and
whenever they hold half the kernel's limit of mappings."""

import sys

import jax
import jax.numpy as jnp
import pytest
from compiled_programs import mapping_limit, memory_mappings, release_compiled_programs, release_past

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/maps")


def compile_programs(count: int) -> None:
    for n in range(1, count + 1):  # each its own compile
        jax.jit(lambda x, n=n: jnp.sin(x) * n + jnp.cos(x).sum())(jnp.ones((n,))).block_until_ready()


def test_released_programs_give_back_their_memory_mappings():
    release_compiled_programs()
    before = memory_mappings()
    compile_programs(60)
    grown = memory_mappings() - before
    assert grown >= 60  # each kept executable holds mappings of its own (about three)
    release_compiled_programs()
    assert memory_mappings() - before <= grown // 2  # what stays: mappings JAX and the allocator keep for reuse


def test_programs_are_released_only_past_the_share_of_the_limit():
    assert mapping_limit() >= 1000
    compile_programs(30)
    held = memory_mappings()
    assert not release_past(0.5, limit=4 * held)
    assert memory_mappings() >= held - 10  # nothing released: the programs are still mapped
    assert release_past(0.5, limit=held)
    assert memory_mappings() < held - 60
