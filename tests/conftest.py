"""Strict test harness shared by every test.

- Two emulated CPU devices, so sharding code paths run in CI.
- One on-disk JAX compilation cache (``.cache/jax``, ignored by git) for the
  test processes (both pytest-xdist workers, the subprocesses tests start and
  later runs), holding every program that took 0.2 s or more to compile: a
  program one process compiled, the others load. It has a size limit, which
  is what makes JAX lock it (``filelock``) while an entry is read or written:
  without one, jax 0.10 writes entries unlocked and a process could load
  another's half-written program. An entry that cannot be read or written is
  compiled instead (JAX's warning about it is not an error here).
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
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_ROOT, ".cache", "jax"))
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 * 2 ** 30))

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from figures.__main__ import _forget_programs  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

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
