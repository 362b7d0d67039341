"""Sweeps sharded over devices give exactly the results of a one-device run.

The conftest emulates 2 CPU devices in this process; a subprocess emulates 4
(the device count is fixed when JAX starts).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
from empirical import devices as _devices
from empirical.engine import run_chunked

ROOT = pathlib.Path(__file__).resolve().parents[2]
# One small architecture for every sweep here (few distinct compiled shapes).
SWEEP = dict(activation="tanh", width=16, depth=3, sigma_w2=[1.0, 2.5], sigma_b2=0.05,
             n_seeds=5, n_inputs=4, in_features=6, progress=False)


def _assert_same(a, b):
  assert set(a.data_vars) == set(b.data_vars)
  for name in a.data_vars:
    np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_two_devices_are_emulated():
  assert len(jax.devices()) >= 2


@pytest.mark.slow
def test_sweep_on_all_devices_is_bitwise_the_one_device_sweep(tmp_path):
  # 5 seeds x 2 settings in groups of 8 over 2 devices: the chunk is padded, and
  # chunk_size=3 makes several chunks, each split over both devices.
  one = empirical.sweep(jax.random.key(3), devices=1, **SWEEP)
  assert np.all(np.isfinite(one["q"].values)) and np.all(one["q"].values > 0)
  _assert_same(one, empirical.sweep(jax.random.key(3), **SWEEP))
  _assert_same(one, empirical.sweep(jax.random.key(3), devices=jax.devices()[:2], chunk_size=3,
                                    store=tmp_path / "s", **SWEEP))
  # Resuming from the store (written by the sharded run) reads the same numbers back.
  _assert_same(one, empirical.sweep(jax.random.key(3), chunk_size=3, store=tmp_path / "s",
                                    **SWEEP))


@pytest.mark.slow
def test_jacobian_spectra_on_all_devices_are_bitwise_the_one_device_spectra():
  kw = dict(activation="tanh", width=12, depth=[2, 3], sigma_w2=[1.2, 1.8], sigma_b2=0.05,
            init="gaussian", n_seeds=5, q=0.5, progress=False)
  assert len(_devices.resolve(None)) == 1   # on the CPU, by default: one
  one = empirical.jacobian_spectra(jax.random.key(5), devices=1, **kw)
  assert np.all(np.isfinite(one["singular_values"].values))
  _assert_same(one, empirical.jacobian_spectra(jax.random.key(5), **kw))
  _assert_same(one, empirical.jacobian_spectra(jax.random.key(5), devices=2, chunk_size=3,
                                               **kw))


@pytest.mark.slow
def test_training_split_over_devices_is_bitwise_one_device_chunks():
  # Two devices, chunks of 4: each device trains 2 networks at once, exactly
  # as one device does with chunks of 2 (here 3 settings x 2 seeds).
  blobs = empirical.gaussian_blobs(key=jax.random.key(1), n_samples=120, n_features=6,
                                  n_classes=3)
  kw = dict(data=blobs, activation="tanh", width=8, depth=3, sigma_w2=[1.0, 1.8, 3.0],
            sigma_b2=0.05, n_seeds=2, learning_rate=0.05, batch_size=8, probe_size=16,
            n_steps=6, record_every=3, progress=False)
  one = empirical.train(jax.random.key(9), devices=1, chunk_size=2, **kw)
  assert np.all(np.isfinite(one["train_loss"].values))
  _assert_same(one, empirical.train(jax.random.key(9), devices=2, chunk_size=4, **kw))


def test_training_refuses_bad_devices_before_any_work():
  with pytest.raises(ValueError, match="`devices` must"):
    empirical.train(jax.random.key(0), devices=3, sigma_w2=1.0, learning_rate=0.1,
                    n_steps=1, progress=False)
  # A device of another host (here a stand-in: not in jax.local_devices()).
  with pytest.raises(ValueError, match="this process's own devices"):
    _devices.check_local((jax.devices()[0], object()))


def _compute(scale, idx):
  """A per-item computation with a shared argument: item i depends on i only."""
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(7), i))(idx)
  z = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)
  return {"z": z * scale, "i": idx}


_compute_jit = jax.jit(_compute)


def test_run_chunked_splits_each_chunk_evenly_over_devices():
  scale = jnp.float32(2.0)
  one = run_chunked(_compute_jit, 11, chunk_size=4, shared=(scale,), progress=False)
  two = run_chunked(_compute_jit, 11, chunk_size=4, shared=(scale,), devices=2,
                    progress=False)
  np.testing.assert_array_equal(one["i"], np.arange(11))
  for name in one:
    np.testing.assert_array_equal(one[name], two[name], err_msg=name)
  # The indices really are split: device d holds the d-th contiguous half.
  devs = _devices.resolve(2)
  shared, idx = _devices.place((scale,), np.arange(8, dtype=np.int32), devs)
  shards = sorted(idx.addressable_shards, key=lambda s: devs.index(s.device))
  assert [np.asarray(s.data).tolist() for s in shards] == [[0, 1, 2, 3], [4, 5, 6, 7]]
  assert shared[0].sharding.is_fully_replicated


@pytest.mark.parametrize("devices, match", [
    (0, r"`devices` must be None, a sequence of jax.Device or an integer in 1\.\.\d+"),
    (10_000, r"an integer in 1\.\.\d+ \(this process's devices\), got 10000"),
    ([], "`devices` must be a non-empty sequence of jax.Device, got ()"),
    ("cpu", "`devices` must be None, an integer or a sequence of jax.Device, got 'cpu'"),
    (True, "`devices` must be None, an integer or a sequence of jax.Device, got True"),
])
def test_bad_devices_raise_before_any_work(devices, match):
  with pytest.raises(ValueError, match=match):
    empirical.sweep(jax.random.key(0), devices=devices, **SWEEP)
  with pytest.raises(ValueError, match=match):
    run_chunked(_compute_jit, 3, chunk_size=1, devices=devices, progress=False)


_FOUR_DEVICES = textwrap.dedent("""
  import jax, numpy as np, empirical
  assert len(jax.devices()) == 4, jax.devices()
  kw = {kw!r}
  one = empirical.sweep(jax.random.key(3), devices=1, **kw)
  assert len(empirical.devices.resolve(None)) == 1   # the CPU default: one device
  four = empirical.sweep(jax.random.key(3), devices=4, **kw)
  chunked = empirical.sweep(jax.random.key(3), devices=4, chunk_size=3, **kw)  # 2 chunks
  for name in one.data_vars:
    np.testing.assert_array_equal(one[name].values, four[name].values, err_msg=name)
    np.testing.assert_array_equal(one[name].values, chunked[name].values, err_msg=name)
  print("identical", len(jax.devices()))
""")


@pytest.mark.slow
def test_four_emulated_devices_in_a_subprocess():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  done = subprocess.run([sys.executable, "-c", _FOUR_DEVICES.format(kw=SWEEP)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "identical 4" in done.stdout
