"""Strict test harness shared by every test.

- Two emulated CPU devices, so sharding code paths run in CI.
- A shared on-disk JAX compilation cache (``.cache/jax``) for the test
  processes, holding every program that took 0.2 s or more to compile (JAX's
  default is 1 s): the two workers share the theory programs they both use.
- Implicit rank promotion raises (broadcasting must be explicit).
- Warnings are errors (see pyproject.toml).
- 64-bit is *not* switched on globally: tests that need it use the ``x64``
  fixture, which wraps ``jax.enable_x64(True)``; float32 stays the default so
  dtype preservation is tested as a user meets it.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("MPLBACKEND", "Agg")
# One on-disk compilation cache for the test processes (both pytest-xdist workers and the
# subprocesses some tests start), so a program compiled by one is loaded by the others; it
# changes no result. Outside the repository's tracked files (see .gitignore).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   ".cache", "jax"))

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture
def x64():
  """Run the test body with 64-bit JAX types enabled."""
  with jax.enable_x64(True):
    yield
