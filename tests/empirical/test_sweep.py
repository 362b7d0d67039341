from __future__ import annotations

import glob
import importlib
import os

import jax
import numpy as np
import pytest

from empirical import models, probes

# The module, not the function `empirical.sweep` that the package exports.
sweep = importlib.import_module("empirical.sweep")

KEY = jax.random.key(42)
# One small configuration shared by the tests below (one compiled program).
SMALL = dict(activation="tanh", width=32, depth=4, sigma_w2=[0.5, 1.5, 2.5], sigma_b2=0.1,
             n_seeds=5, n_inputs=4, in_features=8, progress=False)


@pytest.fixture(scope="module", autouse=True)
def small_groups():
  # Groups of 2 vmapped networks (8 by default), so that 5 seeds make
  # several groups and chunks.
  with pytest.MonkeyPatch.context() as m:
    m.setattr(sweep, "_GROUP", 2)
    yield


@pytest.fixture(scope="module")
def small(small_groups):
  return sweep.sweep(KEY, **SMALL)


def _assert_identical(a, b):
  assert set(a.data_vars) == set(b.data_vars)
  for name in a.data_vars:
    np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_layout(small):
  assert small.q.dims == ("sigma_w2", "seed", "layer")
  assert small.first_nonfinite.dims == ("sigma_w2", "seed")
  np.testing.assert_array_equal(small.layer, [1, 2, 3, 4])
  np.testing.assert_array_equal(small.seed, np.arange(5))
  np.testing.assert_array_equal(small.sigma_w2, [0.5, 1.5, 2.5])
  assert small.sigma_b2.ndim == 0 and float(small.sigma_b2) == 0.1   # unswept: scalar coord
  assert str(small.activation.values) == "tanh" and int(small.width) == 32
  assert set(probes.Stats._fields) <= set(small.data_vars)
  np.testing.assert_allclose(small.layer_sigma_w2.sel(sigma_w2=1.5), 1.5)
  assert small.q.dtype == np.float32


def test_network_i_is_fold_in_key_i(small):
  # The seed-key convention: network i of a sweep is the network of fold_in(key, i).
  x = sweep.make_inputs(jax.random.split(KEY)[1], n_inputs=4, in_features=8)
  std = models.standard_params(models.network_key(KEY, 3), in_features=8, width=32, depth=4)
  ws, bs = models.layer_scales("gaussian", 1.5, 0.1, in_features=8, width=32, depth=4)
  r = probes.readout(jax.random.fold_in(models.network_key(KEY, 3), 2), 32)
  one = jax.jit(probes.measure, static_argnames="activation")(
      models.scale_params(std, ws, bs), x, r, activation="tanh")
  for name in ("q", "c", "grad_h", "grad_w"):
    np.testing.assert_allclose(small[name].sel(sigma_w2=1.5, seed=3), getattr(one, name)[:, 0],
                               rtol=1e-5, err_msg=name)


def test_result_does_not_depend_on_chunk_size(small):
  # The default is one chunk of three groups; chunk sizes of 1 or 2 seeds
  # (one group per chunk) and 5 seeds (one chunk, last group padded).
  for chunk_size in (3, 6, 15):
    _assert_identical(sweep.sweep(KEY, chunk_size=chunk_size, **SMALL), small)
  # Splitting a seed's three settings into blocks batches rows differently:
  # float32 rounding only.
  split = sweep.sweep(KEY, chunk_size=2, **SMALL)
  for name in small.data_vars:
    np.testing.assert_allclose(split[name], small[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_resume_equals_uninterrupted(small, tmp_path):
  store = tmp_path / "store"
  first = sweep.sweep(KEY, chunk_size=3, store=store, **SMALL)
  _assert_identical(first, small)
  chunks = sorted(glob.glob(str(store / "config-0000" / "chunk-*.npz")))
  assert len(chunks) == 3
  # Simulate a run killed at various moments: a chunk never written, one
  # truncated (torn copy), and a stray temporary file of a chunk in progress.
  os.remove(chunks[1])
  with open(chunks[2], "r+b") as f:
    f.truncate(100)
  with open(store / "config-0000" / ".tmp-abc-chunk-000000004-000000005.npz", "wb") as f:
    f.write(b"partial")
  os.utime(chunks[0], (1.0, 1.0))
  # A rerun with another chunk size resumes with the stored geometry.
  resumed = sweep.sweep(KEY, chunk_size=6, store=store, **SMALL)
  _assert_identical(resumed, small)
  assert os.path.getmtime(chunks[0]) == 1.0           # reused, not recomputed
  assert os.path.exists(chunks[1])
  with pytest.raises(ValueError, match=r"`store` .* holds results of a different computation"):
    sweep.sweep(KEY, chunk_size=3, store=store, **{**SMALL, "sigma_b2": 0.2})


def test_inputs_with_given_length_and_cosine():
  x = sweep.make_inputs(KEY, n_inputs=7, in_features=50, q_input=2.0, c_input=-0.3)
  q, c = sweep.input_statistics(x)
  np.testing.assert_allclose(np.sum(np.asarray(x, np.float64) ** 2, 1) / 50, 2.0, rtol=1e-5)
  np.testing.assert_allclose(c, -0.3, atol=1e-5)
  np.testing.assert_allclose(q, 2.0, rtol=1e-5)


@pytest.mark.parametrize("override,message", [
    (dict(sigma_w2=-1.0), r"`sigma_w2` must be a finite number >= 0, got -1.0"),
    (dict(sigma_w2=[1.0, -0.5]), r"`sigma_w2` must be a finite number >= 0, got -0.5"),
    (dict(sigma_b2=-0.1), r"`sigma_b2` must be a finite number >= 0, got -0.1"),
    (dict(depth=0), r"`depth` must be an integer >= 1, got 0"),
    (dict(width=[8, 0]), r"`width` must be an integer >= 1, got 0"),
    (dict(init="kaiming"), r"`init` must be one of .*gaussian.*he_normal.*got 'kaiming'"),
    (dict(activation="tanhh"), r"`activation` must be one of .*relu.*tanh.*got 'tanhh'"),
    (dict(init="he_normal"), r"`sigma_w2` must be None for init 'he_normal'"),
    (dict(init=["gaussian", "he_normal"]), r"`init` must not mix"),
    (dict(sigma_w2=None), r"`sigma_w2` must be given"),
    (dict(n_seeds=0), r"`n_seeds` must be an integer >= 1, got 0"),
    (dict(c_input=1.5), r"`c_input` must be a number in \[-1, 1\], got 1.5"),
    (dict(norm="group"), r"`norm` must be one of None, 'layer', 'batch', got 'group'"),
])
def test_bad_input_raises_before_work(override, message):
  with pytest.raises(ValueError, match=message):
    sweep.sweep(KEY, **{**SMALL, **override})


def test_run_chunked_is_reusable(tmp_path):
  calls = []

  def compute(idx):
    calls.append(len(idx))
    return {"square": idx * idx}

  out = sweep.run_chunked(compute, 7, chunk_size=3, store=tmp_path, spec={"f": "square"},
                          progress=False)
  np.testing.assert_array_equal(out["square"], np.arange(7) ** 2)
  assert calls == [3, 3, 3]
  again = sweep.run_chunked(compute, 7, chunk_size=3, store=tmp_path, spec={"f": "square"},
                            progress=False)
  np.testing.assert_array_equal(again["square"], out["square"])
  assert calls == [3, 3, 3]                            # everything loaded from the store
