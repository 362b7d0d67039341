"""Strict test harness shared by every test.

- Two emulated CPU devices, so sharding code paths run in CI.
- No on-disk JAX compilation cache (``JAX_ENABLE_COMPILATION_CACHE=false``,
  inherited by the subprocesses tests start): with jax 0.10 on the CPU,
  processes that share a cache directory can read an entry another is still
  writing (entries are written in place, without a lock, when no size limit
  is set), and XLA segfaulted on such reads and writes in the slow tier.
- A worker process that nears its memory-map limit drops JAX's compiled
  programs after a test (``figures.__main__._forget_programs``, the figure
  runner's own guard): each XLA CPU executable holds memory maps, a process may
  have at most ``vm.max_map_count`` (65530 by default) of them, and a worker
  running a few hundred slow tests compiles enough programs to reach it; past
  it, LLVM fails to map memory and the worker dies in the middle of a compile.
- Implicit rank promotion raises (broadcasting must be explicit).
- Warnings are errors (see pyproject.toml).
- 64-bit is *not* switched on globally: tests that need it use the ``x64``
  fixture, which wraps ``jax.enable_x64(True)``; float32 stays the default so
  dtype preservation is tested as a user meets it.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from figures.__main__ import _forget_programs  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _room_for_programs():
  """After each test, drop the compiled programs if the process nears its map limit."""
  yield
  _forget_programs(when_unknown=False)


@pytest.fixture
def x64():
  """Run the test body with 64-bit JAX types enabled."""
  with jax.enable_x64(True):
    yield
