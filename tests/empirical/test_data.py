"""Tests for empirical.data: splits, standardisation, IDX files, blobs, batches."""

from __future__ import annotations

import functools
import gzip
import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from empirical import data

KEY = jax.random.key(0)


# ---------------------------------------------------------------------------
# Helpers written independently of the module under test.


_IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
              np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, *, compress=False):
  """Writes ``array`` as an IDX file with struct, following LeCun's spec."""
  array = np.asarray(array)
  header = struct.pack(">BBBB", 0, 0, _IDX_CODES[array.dtype.type], array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return raw


def expected_standardized(x_train, x_test):
  """Per-feature standardisation on the training split, in float64."""
  x_train = np.asarray(x_train, np.float64)
  x_test = np.asarray(x_test, np.float64)
  mean, std = x_train.mean(0), x_train.std(0)
  constant = np.ptp(x_train, axis=0) == 0
  safe = np.where(constant, 1.0, std)
  return (np.where(constant, 0.0, (x_train - mean) / safe),
          np.where(constant, 0.0, (x_test - mean) / safe))


def sorted_rows(a):
  a = np.asarray(a)
  return a[np.lexsort(a.T[::-1])]


# ---------------------------------------------------------------------------
# Digits.


@pytest.fixture(scope="module")
def digits_raw():
  from sklearn import datasets
  return datasets.load_digits(return_X_y=True)


def test_digits_shapes_dtypes_and_stratified_counts(digits_raw):
  d = data.load_digits(key=KEY)
  assert d.name == "digits" and d.n_classes == 10
  assert d.x_train.shape == (1438, 64) and d.x_test.shape == (359, 64)
  assert (d.n_train, d.n_test, d.n_features, d.input_shape) == (1438, 359, 64, (64,))
  assert d.x_train.dtype == jnp.float32 and d.x_test.dtype == jnp.float32
  assert d.y_train.dtype == jnp.int32 and d.y_test.dtype == jnp.int32
  # Stratified: each class sends floor or ceil of 0.2 n_k to the test split.
  n_k = np.bincount(digits_raw[1], minlength=10)
  test_k = np.bincount(np.asarray(d.y_test), minlength=10)
  assert np.all(test_k >= np.floor(0.2 * n_k)) and np.all(test_k <= np.ceil(0.2 * n_k))
  assert test_k.sum() == round(0.2 * 1797)


def test_digits_split_is_a_partition_of_the_raw_data(digits_raw):
  d = data.load_digits(key=KEY, standardize=False)
  x, y = digits_raw
  got = np.concatenate([
      np.concatenate([d.x_train, d.y_train[:, None].astype(jnp.float32)], axis=1),
      np.concatenate([d.x_test, d.y_test[:, None].astype(jnp.float32)], axis=1)])
  np.testing.assert_array_equal(sorted_rows(got), sorted_rows(np.column_stack([x, y])))


def test_digits_standardized_on_training_split_only():
  raw = data.load_digits(key=KEY, standardize=False)
  std = data.load_digits(key=KEY)
  np.testing.assert_array_equal(raw.y_train, std.y_train)
  want_train, want_test = expected_standardized(raw.x_train, raw.x_test)
  # float32 rounding of values up to ~40 in size.
  np.testing.assert_allclose(std.x_train, want_train, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(std.x_test, want_test, rtol=1e-6, atol=1e-6)
  constant = np.ptp(np.asarray(raw.x_train), axis=0) == 0
  assert constant.sum() >= 3  # three pixels are blank in every digit
  assert np.all(np.asarray(std.x_train)[:, constant] == 0)
  assert np.all(np.asarray(std.x_test)[:, constant] == 0)
  # The test split is not itself standardised: its mean is off zero.
  assert np.abs(np.asarray(std.x_test).mean(0)).max() > 1e-3


def test_digits_split_is_deterministic_in_the_key():
  a = data.load_digits(key=KEY, standardize=False)
  b = data.load_digits(key=jax.random.key(0), standardize=False)
  c = data.load_digits(key=jax.random.key(1), standardize=False)
  np.testing.assert_array_equal(a.x_test, b.x_test)
  assert not np.array_equal(a.y_test, c.y_test)


def test_digits_x64_default_and_explicit_dtype(x64):
  assert data.load_digits(key=KEY).x_train.dtype == jnp.float64
  assert data.load_digits(key=KEY, dtype=jnp.float32).x_test.dtype == jnp.float32


@pytest.mark.parametrize("test_fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.2"])
def test_digits_rejects_bad_test_fraction(test_fraction):
  with pytest.raises(ValueError, match="`test_fraction` must be a number strictly between 0 and 1"):
    data.load_digits(key=KEY, test_fraction=test_fraction)


def test_rejects_non_float_dtype():
  with pytest.raises(ValueError, match="`dtype` must be None or a floating dtype"):
    data.load_digits(key=KEY, dtype=jnp.int32)


# ---------------------------------------------------------------------------
# split_data on one's own arrays.


@pytest.mark.parametrize("stratify", [True, False])
def test_split_data_partitions_indices(stratify):
  n = 103
  y = np.arange(n) % 4
  s = data.split_data(np.arange(n)[:, None], y, key=KEY, test_fraction=0.3,
                      stratify=stratify, standardize=False)
  train = np.asarray(s.x_train[:, 0]).astype(int)
  test = np.asarray(s.x_test[:, 0]).astype(int)
  assert test.size == round(0.3 * n)
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
  np.testing.assert_array_equal(s.y_train, y[train])
  np.testing.assert_array_equal(s.y_test, y[test])
  assert s.n_classes == 4 and s.name == "data"
  if stratify:
    counts = np.bincount(y[test], minlength=4)
    assert np.all(np.abs(counts - 0.3 * np.bincount(y)) < 1)
  # The parts come shuffled, not in input order.
  assert not np.all(np.diff(train) > 0)


def test_split_data_constant_training_features_are_zero_in_both_parts():
  n = 40
  y = np.arange(n) % 2
  first = data.split_data(np.arange(n)[:, None], y, key=KEY, standardize=False)
  test_row = int(first.x_test[0, 0])
  x = np.zeros((n, 3))
  x[:, 0] = np.arange(n)
  x[test_row, 1] = 5.0       # varies only in the test split
  x[:, 2] = 0.1              # constant whose float mean is not exactly 0.1
  s = data.split_data(x, y, key=KEY)
  assert np.all(np.asarray(s.x_train)[:, 1:] == 0)
  assert np.all(np.asarray(s.x_test)[:, 1:] == 0)
  np.testing.assert_allclose(np.asarray(s.x_train)[:, 0].std(), 1.0, rtol=1e-6)


def test_split_data_keeps_input_shape():
  x = np.arange(20 * 2 * 3, dtype=np.float32).reshape(20, 2, 3)
  s = data.split_data(x, np.arange(20) % 2, key=KEY, standardize=False)
  assert s.input_shape == (2, 3) and s.n_features == 6


@pytest.mark.parametrize("x_shape, y, message", [
    ((5, 2), np.zeros(4, int), "`x` and `y` must have shapes"),
    ((4, 2), np.zeros((4, 1), int), "`x` and `y` must have shapes"),
    ((4, 2), np.zeros(4), "`y` must hold integer class labels"),
    ((4, 2), np.array([0, 1, -1, 0]), "`y` must hold labels >= 0"),
    ((1, 2), np.zeros(1, int), "`x` must hold at least 2 examples"),
])
def test_split_data_rejects_bad_arrays(x_shape, y, message):
  with pytest.raises(ValueError, match=message):
    data.split_data(np.zeros(x_shape), y, key=KEY)


def test_split_data_rejects_labels_beyond_n_classes_and_non_finite_x():
  with pytest.raises(ValueError, match=r"`y` must hold labels in \[0, n_classes\) = \[0, 2\), got label 2"):
    data.split_data(np.zeros((4, 1)), np.array([0, 1, 2, 0]), key=KEY, n_classes=2)
  x = np.zeros((4, 1))
  x[0, 0] = np.nan
  with pytest.raises(ValueError, match="`x` must be finite"):
    data.split_data(x, np.array([0, 1, 0, 1]), key=KEY)


# ---------------------------------------------------------------------------
# IDX files.


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("dtype", list(_IDX_CODES))
def test_load_idx_reads_what_was_written(tmp_path, dtype, compress):
  values = np.arange(-7, 3 * 4 * 2 - 7).reshape(3, 4, 2)
  if dtype is np.uint8:
    values = values + 7
  array = values.astype(dtype) * (dtype(0.5) if dtype in (np.float32, np.float64) else 1)
  path = tmp_path / "file-idx3"
  write_idx(path, array, compress=compress)
  got = data.load_idx(path)
  assert got.dtype == np.dtype(dtype) and got.dtype.isnative
  np.testing.assert_array_equal(got, array)


def test_load_idx_one_dimensional(tmp_path):
  write_idx(tmp_path / "labels", np.array([3, 1, 4, 1, 5], np.uint8))
  np.testing.assert_array_equal(data.load_idx(str(tmp_path / "labels")), [3, 1, 4, 1, 5])


@pytest.mark.parametrize("mangle, message", [
    (lambda raw: b"\x01" + raw[1:], "is not an IDX file"),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "is not an IDX file"),
    (lambda raw: raw[:3] + b"\x00" + raw[4:], "is not an IDX file"),
    (lambda raw: b"", "is not an IDX file: .* got an empty file"),
    (lambda raw: raw[:6], "is a truncated IDX file: its header needs 12 bytes"),
    (lambda raw: raw[:-1], r"is a truncated IDX file: dimensions \(2, 3\) of int16 need 24 bytes, got 23"),
    (lambda raw: raw + b"\x00", "is a too long IDX file"),
    (lambda raw: gzip.compress(raw)[:-5], "is not a readable gzip file"),
])
def test_load_idx_rejects_files_that_are_not_idx(tmp_path, mangle, message):
  path = tmp_path / "bad"
  raw = write_idx(path, np.arange(6, dtype=np.int16).reshape(2, 3))
  path.write_bytes(mangle(raw))
  with pytest.raises(ValueError, match=message) as info:
    data.load_idx(path)
  assert str(path) in str(info.value)


def test_load_idx_rejects_missing_path_and_directory(tmp_path):
  with pytest.raises(ValueError, match=r"`path` must be an existing IDX file, got .*nowhere' \(no such file\)"):
    data.load_idx(tmp_path / "nowhere")
  with pytest.raises(ValueError, match=r"\(a directory\)"):
    data.load_idx(tmp_path)


# ---------------------------------------------------------------------------
# MNIST-style directories.


def write_mnist(directory, *, n_train=12, n_test=5, shape=(4, 3), compress=False,
                names=None):
  """Writes a tiny MNIST look-alike; pixel (0, 0) is constant (blank border)."""
  rng = np.random.default_rng(0)
  names = names or data.MNIST_FILES
  arrays = {
      "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
      "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
      "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
      "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
  }
  arrays["train_images"][:, 0, 0] = 0
  directory.mkdir(exist_ok=True)
  for part, array in arrays.items():
    name = names[part] + (".gz" if compress else "")
    write_idx(directory / name, array, compress=compress)
  return arrays


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_mnist_reads_raw_files(tmp_path, compress):
  arrays = write_mnist(tmp_path, compress=compress)
  d = data.load_mnist(tmp_path, standardize=False)
  assert d.name == "mnist" and d.n_classes == 10
  assert d.x_train.shape == (12, 12) and d.x_test.shape == (5, 12)
  assert d.x_train.dtype == jnp.float32 and d.y_train.dtype == jnp.int32
  np.testing.assert_array_equal(d.x_train, arrays["train_images"].reshape(12, 12))
  np.testing.assert_array_equal(d.x_test, arrays["test_images"].reshape(5, 12))
  np.testing.assert_array_equal(d.y_train, arrays["train_labels"])
  np.testing.assert_array_equal(d.y_test, arrays["test_labels"])


def test_load_mnist_standardizes_per_pixel_and_keeps_image_shape(tmp_path):
  arrays = write_mnist(tmp_path)
  d = data.load_mnist(str(tmp_path), kind="fashion_mnist", flatten=False)
  assert d.name == "fashion_mnist" and d.input_shape == (4, 3)
  want_train, want_test = expected_standardized(
      arrays["train_images"].reshape(12, -1), arrays["test_images"].reshape(5, -1))
  np.testing.assert_allclose(np.asarray(d.x_train).reshape(12, -1), want_train, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(d.x_test).reshape(5, -1), want_test, rtol=1e-6, atol=1e-6)
  assert np.all(np.asarray(d.x_test)[:, 0, 0] == 0)  # constant on the training split


def test_load_mnist_accepts_dotted_names(tmp_path):
  dotted = {part: name.replace("-idx", ".idx") for part, name in data.MNIST_FILES.items()}
  write_mnist(tmp_path, names=dotted, compress=True)
  assert data.load_mnist(tmp_path).n_train == 12


def test_load_mnist_rejects_unknown_kind(tmp_path):
  with pytest.raises(ValueError, match="`kind` must be one of mnist, fashion_mnist, got 'emnist'"):
    data.load_mnist(tmp_path, kind="emnist")


def test_load_mnist_missing_directory_names_path_and_files(tmp_path):
  missing = tmp_path / "no-such-dir"
  with pytest.raises(ValueError) as info:
    data.load_mnist(missing)
  message = str(info.value)
  assert str(missing) in message and "no such directory" in message
  assert all(name in message for name in data.MNIST_FILES.values())


def test_load_mnist_missing_file_is_listed(tmp_path):
  write_mnist(tmp_path)
  (tmp_path / "t10k-labels-idx1-ubyte").unlink()
  with pytest.raises(ValueError, match="missing: t10k-labels-idx1-ubyte$"):
    data.load_mnist(tmp_path)


def test_load_mnist_rejects_wrong_contents(tmp_path):
  write_mnist(tmp_path)
  labels = tmp_path / "train-labels-idx1-ubyte"
  write_idx(labels, np.zeros(11, np.uint8))
  with pytest.raises(ValueError, match=r"must hold uint8 labels of shape \(12,\)"):
    data.load_mnist(tmp_path)
  write_idx(labels, np.full(12, 10, np.uint8))
  with pytest.raises(ValueError, match="must hold labels in 0 .. 9, got 10"):
    data.load_mnist(tmp_path)
  write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 4, 3), np.int16))
  write_idx(labels, np.zeros(12, np.uint8))
  with pytest.raises(ValueError, match="must hold uint8 images"):
    data.load_mnist(tmp_path)
  (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
  with pytest.raises(ValueError, match="is not an IDX file"):
    data.load_mnist(tmp_path)


# ---------------------------------------------------------------------------
# Gaussian blobs.


def test_blobs_shapes_balance_and_determinism():
  b = data.gaussian_blobs(key=KEY, n_samples=50, n_features=3, n_classes=5)
  assert b.name == "blobs" and b.n_classes == 5
  assert b.x_train.shape == (40, 3) and b.x_test.shape == (10, 3)
  np.testing.assert_array_equal(np.bincount(np.asarray(b.y_test)), [2] * 5)
  again = data.gaussian_blobs(key=jax.random.key(0), n_samples=50, n_features=3, n_classes=5)
  np.testing.assert_array_equal(b.x_train, again.x_train)
  other = data.gaussian_blobs(key=jax.random.key(1), n_samples=50, n_features=3, n_classes=5)
  assert not np.array_equal(b.x_train, other.x_train)


def test_blobs_separation_and_unit_within_class_variance():
  d, k, n = 1000, 5, 2000
  separation = 4.0
  b = data.gaussian_blobs(key=KEY, n_samples=n, n_features=d, n_classes=k,
                          separation=separation, standardize=False)
  x = np.concatenate([b.x_train, b.x_test]).astype(np.float64)
  y = np.concatenate([b.y_train, b.y_test])
  means = np.stack([x[y == c].mean(0) for c in range(k)])
  n_c = n // k
  # Within-class variance per feature is 1; the pooled estimate over
  # n - k degrees of freedom per feature and d features has relative
  # spread sqrt(2 / ((n - k) d)) ~ 7e-4; 5 of them allowed.
  within = np.mean((x - means[y]) ** 2) * n / (n - k)
  assert abs(within - 1) < 5 * math.sqrt(2 / ((n - k) * d))
  # |m_j - m_k|^2 = |mu_j - mu_k|^2 + noise with mean 2 d / n_c; each
  # |mu_j - mu_k|^2 / separation^2 ~ chi2_d / d, relative spread sqrt(2 / d)
  # (an average over pairs spreads no more); 5 of them allowed.
  pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
  dist2 = np.mean([np.sum((means[i] - means[j]) ** 2) for i, j in pairs]) - 2 * d / n_c
  assert abs(dist2 / separation**2 - 1) < 5 * math.sqrt(2 / d)


@pytest.mark.slow
def test_blobs_same_numbers_in_both_precisions():
  b32 = data.gaussian_blobs(key=KEY, n_samples=20, n_features=4)
  with jax.enable_x64(True):
    b64 = data.gaussian_blobs(key=KEY, n_samples=20, n_features=4)
    assert b64.x_train.dtype == jnp.float64
    np.testing.assert_array_equal(b32.x_train, np.asarray(b64.x_train).astype(np.float32))
    np.testing.assert_array_equal(b32.y_test, b64.y_test)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_classes=1), "`n_classes` must be an integer >= 2, got 1"),
    (dict(n_samples=7), "`n_samples` must be an integer >= 8, got 7"),
    (dict(n_features=0), "`n_features` must be an integer >= 1, got 0"),
    (dict(n_features=2.0), "`n_features` must be an integer >= 1, got 2.0"),
    (dict(separation=-1.0), "`separation` must be a finite number >= 0, got -1.0"),
    (dict(separation=float("inf")), "`separation` must be a finite number >= 0"),
    (dict(test_fraction=1.0), "`test_fraction` must be a number strictly between 0 and 1"),
])
def test_blobs_rejects_bad_arguments(kwargs, message):
  args = dict(key=KEY, n_samples=20, n_features=2, n_classes=4) | kwargs
  with pytest.raises(ValueError, match=message):
    data.gaussian_blobs(**args)


# ---------------------------------------------------------------------------
# Batches.

N = 24
X = jnp.arange(N * 2, dtype=jnp.float32).reshape(N, 2)
Y = jnp.arange(N, dtype=jnp.int32)


@pytest.mark.slow
def test_sample_batch_jits_and_vmaps_over_keys():
  sample = jax.jit(functools.partial(data.sample_batch, batch_size=8),
                   static_argnames="replace")
  keys = jax.random.split(KEY, 3)
  xb, yb = jax.vmap(lambda k: sample(X, Y, key=k))(keys)
  assert xb.shape == (3, 8, 2) and yb.shape == (3, 8)
  assert xb.dtype == X.dtype and yb.dtype == Y.dtype
  for row in range(3):
    assert len(set(np.asarray(yb[row]).tolist())) == 8  # without replacement
    np.testing.assert_array_equal(xb[row], X[yb[row]])  # rows stay paired
  assert not np.array_equal(yb[0], yb[1])
  again, _ = sample(X, Y, key=keys[0])
  np.testing.assert_array_equal(again, xb[0])


def test_sample_batch_with_replacement_may_exceed_n():
  xb, yb = data.sample_batch(X, Y, key=KEY, batch_size=3 * N, replace=True)
  assert xb.shape == (3 * N, 2)
  assert np.all((np.asarray(yb) >= 0) & (np.asarray(yb) < N))
  np.testing.assert_array_equal(xb, X[yb])


def test_batch_indices_one_epoch():
  index = data.batch_indices(key=KEY, n=N, batch_size=5)
  assert index.shape == (4, 5) and index.dtype == jnp.int32
  flat = np.asarray(index).ravel()
  assert len(set(flat.tolist())) == 20 and flat.min() >= 0 and flat.max() < N
  full = data.batch_indices(key=KEY, n=N, batch_size=6)
  np.testing.assert_array_equal(np.sort(np.asarray(full).ravel()), np.arange(N))


def test_batches_cover_each_epoch_and_differ_between_epochs():
  out = list(data.batches(X, Y, key=KEY, batch_size=6, n_epochs=2))
  assert len(out) == 8
  epochs = [np.concatenate([yb for _, yb in out[4 * e:4 * e + 4]]) for e in range(2)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(N))
  assert not np.array_equal(epochs[0], epochs[1])
  # Epoch e depends only on fold_in(key, e), so a resumed run sees the same batches.
  np.testing.assert_array_equal(
      epochs[1], np.asarray(data.batch_indices(key=jax.random.fold_in(KEY, 1), n=N,
                                               batch_size=6)).ravel())
  for xb, yb in out:
    np.testing.assert_array_equal(xb, X[yb])


@pytest.mark.parametrize("batch_size, message", [
    (0, "`batch_size` must be an integer >= 1, got 0"),
    (-3, "`batch_size` must be an integer >= 1, got -3"),
    (2.5, "`batch_size` must be an integer >= 1, got 2.5"),
    (True, "`batch_size` must be an integer >= 1, got True"),
    (N + 1, f"`batch_size` must be <= the number of examples \\({N}\\)"),
])
def test_batching_rejects_bad_batch_size(batch_size, message):
  with pytest.raises(ValueError, match=message):
    data.sample_batch(X, Y, key=KEY, batch_size=batch_size)
  with pytest.raises(ValueError, match=message):
    data.batches(X, Y, key=KEY, batch_size=batch_size)  # eagerly, before iteration
  with pytest.raises(ValueError, match=message):
    data.batch_indices(key=KEY, n=N, batch_size=batch_size)


def test_batching_rejects_mismatched_arrays_and_bad_epochs():
  with pytest.raises(ValueError, match="`x` and `y` must have shapes"):
    data.sample_batch(X, Y[:-1], key=KEY, batch_size=2)
  with pytest.raises(ValueError, match="`n_epochs` must be an integer >= 1, got 0"):
    data.batches(X, Y, key=KEY, batch_size=2, n_epochs=0)


# ---------------------------------------------------------------------------
# DataSplit.


def test_data_split_is_a_pytree_with_static_metadata():
  s = data.split_data(np.arange(10.0)[:, None], np.arange(10) % 2, key=KEY)
  assert len(jax.tree.leaves(s)) == 4

  @jax.jit
  def total(split):
    assert split.n_classes == 2 and split.name == "data"  # static under jit
    return split.x_train.sum() + split.x_test.sum()

  np.testing.assert_allclose(total(s), np.sum(s.x_train) + np.sum(s.x_test), atol=1e-5)
  doubled = jax.tree.map(lambda a: 2 * a, s)
  assert isinstance(doubled, data.DataSplit) and doubled.name == "data"
  renamed = s.replace(name="mine")
  assert renamed.name == "mine" and renamed.x_train is s.x_train
  assert repr(s) == ("DataSplit(name='data', n_classes=2, x_train=float32[8, 1], "
                     "y_train=int32[8], x_test=float32[2, 1], y_test=int32[2])")


def test_split_data_names_a_bad_key_and_ragged_x():
  x, y = np.ones((10, 3)), np.arange(10) % 2
  with pytest.raises(ValueError, match=r"`key` must be a PRNG key .*got 0"):
    data.split_data(x, y, key=0)
  with pytest.raises(ValueError, match=r"`x` must be a rectangular array"):
    data.split_data([[1.0, 2.0], [3.0]], [0, 1], key=KEY)
