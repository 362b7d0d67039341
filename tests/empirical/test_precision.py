"""The experiment's matrix products run at full float32 precision unless the caller chooses.

On the CPU every precision computes in full float32, so these tests check
what can be seen here: the programs the engine runs carry the precision
(``HIGHEST`` in the lowered dot), the caller's choice (scoped, never a global
flag) reaches every chunk and every device thread and enters the store's
spec, results do not change, and random weights are bitwise the same on one
and two devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
from empirical import devices as _devices
from empirical import engine

SWEEP = dict(activation="tanh", width=8, depth=2, sigma_w2=1.5, n_seeds=4, n_inputs=3,
             in_features=4, progress=False)


def _recording(seen):
  """A chunk program that records the precision of the dot it lowers and computes it."""
  a = jnp.ones((4, 4), jnp.float32)

  def compute(indices):
    text = jax.jit(jnp.matmul).lower(a, a).as_text()
    seen.append((jax.config.jax_default_matmul_precision,
                 "precision = [HIGHEST, HIGHEST]" in text, "precision = [HIGH, HIGH]" in text))
    return {"i": np.asarray(indices)}
  return compute


def test_chunks_run_at_highest_precision_unless_the_caller_chose(tmp_path):
  assert jax.config.jax_default_matmul_precision is None      # no global flag is set
  seen = []
  engine.run_chunked(_recording(seen), 4, chunk_size=2, progress=False)
  assert seen == [("highest", True, False)] * 2
  assert jax.config.jax_default_matmul_precision is None      # and none is left behind
  seen.clear()
  with jax.default_matmul_precision("tensorfloat32"):
    engine.run_chunked(_recording(seen), 4, chunk_size=2, progress=False)
  assert seen == [("tensorfloat32", False, True)] * 2
  assert engine.matmul_precision() == "highest"


def test_device_threads_carry_the_precision():
  seen = []
  split = _devices.split_over(_recording(seen), _devices.resolve(2))
  with jax.default_matmul_precision("tensorfloat32"):
    split(np.arange(4))
  assert seen == [("tensorfloat32", False, True)] * 2


@pytest.mark.slow
def test_a_store_keeps_apart_runs_of_different_precision(tmp_path):
  full = empirical.sweep(jax.random.key(0), store=tmp_path / "s", **SWEEP)
  with jax.default_matmul_precision("tensorfloat32"), \
      pytest.raises(ValueError, match=r"matmul_precision: stored \"\(absent\)\", now \"tensorfloat32\""):
    empirical.sweep(jax.random.key(0), store=tmp_path / "s", **SWEEP)
  # On the CPU every precision is full float32: the same numbers, bitwise.
  with jax.default_matmul_precision("tensorfloat32"):
    fast = empirical.sweep(jax.random.key(0), store=tmp_path / "t", **SWEEP)
  for name in full.data_vars:
    np.testing.assert_array_equal(full[name].values, fast[name].values, err_msg=name)


@pytest.mark.slow
def test_random_weights_are_bitwise_the_same_on_one_and_two_devices():
  key = jax.random.key(3)

  @jax.jit
  def draw(k, indices):
    w = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k, i), (16, 16)))(indices)
    return {"w": w}

  one = engine.run_chunked(draw, 6, chunk_size=6, shared=(key,), progress=False)
  two = engine.run_chunked(draw, 6, chunk_size=6, shared=(key,), progress=False, devices=2)
  np.testing.assert_array_equal(one["w"], two["w"])
  eager = np.stack([jax.random.normal(jax.random.fold_in(key, i), (16, 16)) for i in range(6)])
  np.testing.assert_array_equal(one["w"], eager)
