from __future__ import annotations

import glob
import math
import os

import jax
import numpy as np
import pytest

import empirical.sweeping as sweep
import meanfield
from empirical import engine, models, probes
from tests.empirical import _tiny

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow    # kill/resume; the default tier checks the store in test_store_keys_*
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
  stray = store / "config-0000" / ".tmp-abc-chunk-000000004-000000005.npz"
  with open(stray, "wb") as f:
    f.write(b"partial")
  os.utime(stray, (1.0, 1.0))        # a dead writer's: last written long ago
  os.utime(chunks[0], (1.0, 1.0))
  # A rerun with another chunk size resumes with the stored geometry.
  resumed = sweep.sweep(KEY, chunk_size=6, store=store, **SMALL)
  _assert_identical(resumed, small)
  assert os.path.getmtime(chunks[0]) == 1.0           # reused, not recomputed
  assert os.path.exists(chunks[1])
  assert not glob.glob(str(store / "config-0000" / ".tmp-*"))   # leftovers cleaned up
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
    (dict(arch=None), r"`arch` of `empirical.sweep` must be meanfield.MLP\(...\) .*got None"),
    (dict(arch=meanfield.MLP(residual=True, alpha=0.5)),
     r"`arch` has alpha=0.5, which `empirical.sweep` does not run"),
])
def test_bad_input_raises_before_work(override, message):
  with pytest.raises(ValueError, match=message):
    sweep.sweep(KEY, **{**SMALL, **override})


def test_run_chunked_is_reusable(tmp_path):
  calls = []

  def compute(idx):
    calls.append(len(idx))
    return {"square": idx * idx}

  out = engine.run_chunked(compute, 7, chunk_size=3, store=tmp_path, spec={"f": "square"},
                          progress=False)
  np.testing.assert_array_equal(out["square"], np.arange(7) ** 2)
  assert calls == [3, 3, 3]
  again = engine.run_chunked(compute, 7, chunk_size=3, store=tmp_path, spec={"f": "square"},
                            progress=False)
  np.testing.assert_array_equal(again["square"], out["square"])
  assert calls == [3, 3, 3]                            # everything loaded from the store


# --- reliability: content-keyed stores, eager validation (issue #11) ------------

TINY = _tiny.TINY   # one program with test_sweep_variants.py's store test


@pytest.mark.slow
def test_store_keys_callables_by_content(tmp_path):
  import jax.numpy as jnp
  tanh_fn, sin_fn = lambda x: jnp.tanh(x), lambda x: jnp.sin(x)
  store = tmp_path / "store"
  tanh = sweep.sweep(KEY, activation=tanh_fn, store=store, **TINY)
  # The same code again resumes (all loaded); different code is a different computation.
  _assert_identical(sweep.sweep(KEY, activation=lambda x: jnp.tanh(x), store=store, **TINY),
                    tanh)
  with pytest.raises(ValueError, match=r"different computation \(activation: stored"):
    sweep.sweep(KEY, activation=lambda x: jnp.sin(x), store=store, **TINY)
  sin = sweep.sweep(KEY, activation=sin_fn, store=tmp_path / "sin", **TINY)
  assert not np.array_equal(sin.q.values, tanh.q.values)
  # Two callables of one name get two labels (cached programs: no compiling).
  both = sweep.sweep(KEY, activation=[tanh_fn, sin_fn], **TINY)
  assert list(both.activation.values) == ["<lambda>", "<lambda>#2"]
  _assert_identical(both.isel(activation=1), sin)
  # A closure over an array is keyed by its values too: another array, another key.
  scale = jnp.asarray(2.0)
  sweep.sweep(KEY, activation=lambda x: jnp.tanh(scale * x), store=tmp_path / "c", **TINY)
  scale = jnp.asarray(3.0)
  with pytest.raises(ValueError, match=r"different computation \(activation: stored"):
    sweep.sweep(KEY, activation=lambda x: jnp.tanh(scale * x), store=tmp_path / "c", **TINY)


@pytest.mark.slow
def test_store_keys_parametrised_inits_exactly(tmp_path):
  from empirical import _grid
  kw = {**TINY, "sigma_w2": None}
  sweep.sweep(KEY, init="normal(0.5)", store=tmp_path, **kw)
  with pytest.raises(ValueError, match=r"init: stored \[\"normal\(0.5\)\"\], now "
                                       r"\[\"normal\(0.5000001\)\"\]"):
    sweep.sweep(KEY, init="normal(0.5000001)", store=tmp_path, **kw)
  labels = _grid.schemes("tanh", ["normal(0.5)", "normal(0.5000001)"], store=None).init_labels
  assert labels == ["normal(0.5)", "normal(0.5000001)"]


def test_store_errors_say_what_is_wrong(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(ValueError, match=r"`store` must be a directory .*which is a file"):
    sweep.sweep(KEY, store=a_file, **TINY)
  store = tmp_path / "store"
  sweep.sweep(KEY, store=store, **TINY)
  with pytest.raises(ValueError, match=r"sigma_b2: stored \[0.0\], now \[0.5\]"):
    sweep.sweep(KEY, store=store, **{**TINY, "sigma_b2": 0.5})
  with jax.enable_x64(True), pytest.raises(
      ValueError, match=r"dtype: stored \"float32\", now \"float64\""):
    sweep.sweep(KEY, store=store, **TINY)
  (store / "config-0000" / "meta.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"unreadable .*meta.json.*delete that directory"):
    sweep.sweep(KEY, store=store, **TINY)


@pytest.mark.parametrize("override,message", [
    (dict(q_input=0.0, c_input=0.5), r"`q_input` must be > 0 when `c_input` != 1"),
    (dict(activation=math.tanh), r"`activation` must be an elementwise jax.numpy function"),
    (dict(activation=lambda x: x.sum()), r"`activation` must be elementwise .* to shape \(\)"),
    (dict(sigma_w2="1.0"), r"`sigma_w2` must be a finite number >= 0, got '1.0'"),
    (dict(sigma_w2=[]), r"`sigma_w2` must be a value or a non-empty list, got \[\]"),
    (dict(sigma_b2=None), r"`sigma_b2` must be a finite number >= 0, got None"),
    (dict(q_input="1"), r"`q_input` must be a finite number >= 0, got '1'"),
    (dict(dtype="int32"), r"`dtype` must be None or a floating dtype .*got 'int32'"),
    (dict(memory_budget="1e9"), r"`memory_budget` must be a finite number > 0, got '1e9'"),
    (dict(depth=10**7), r"`memory_budget` = 1073741824 bytes is too small .*depth <= \d+ fits"),
    (dict(width=10**5), r"`memory_budget` = .* too small .* at width 100000 depth <= 0 fits"),
    (dict(depth=10**12), r"`memory_budget` = .* too small"),
])
def test_more_bad_input_raises_before_work(override, message):
  with pytest.raises(ValueError, match=message):
    sweep.sweep(KEY, **{**TINY, **override})
