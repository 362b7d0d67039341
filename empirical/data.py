"""Data for training experiments: real data sets and synthetic Gaussian mixtures.

Three sources, all returned as a :class:`DataSplit` (train and test arrays,
features standardised on the training split):

- :func:`load_digits`: scikit-learn's handwritten digits (1797 images of
  8x8 pixels, 10 classes). It ships inside scikit-learn, needs no download,
  and is the default real data set.
- :func:`load_mnist`: MNIST or Fashion-MNIST from the standard IDX files
  (optionally gzipped) in a directory the user gives; :func:`load_idx` reads
  one IDX file.
- :func:`gaussian_blobs`: a synthetic mixture of Gaussians, drawn from a key.

Your own arrays become a :class:`DataSplit` with :func:`split_data`.

Minibatches are drawn with explicit keys: :func:`sample_batch` (pure, jits
and vmaps, for a training step), :func:`batch_indices` (one epoch of shuffled
batches as an index array, for ``lax.scan``) and :func:`batches` (a Python
generator over epochs).

Conventions:

- Inputs ``x`` are floating, shape ``(n, *input_shape)`` (``(n, n_features)``
  for flat data); labels ``y`` are ``int32`` of shape ``(n,)`` in
  ``[0, n_classes)``.
- ``dtype=None`` means JAX's default float: ``float32``, or ``float64`` with
  64-bit mode on. The numbers are the same in both modes up to rounding:
  loading and standardising happen in float64 NumPy, and synthetic data is
  drawn in float32 whatever the mode.
- Standardisation (``standardize=True``): every feature (pixel) is shifted
  and scaled by the mean and the standard deviation (``ddof=0``) of that
  feature *over the training split only*, so the training split has zero
  mean and unit variance per feature and the test split is transformed with
  the same numbers. A feature that is constant on the training split (the
  corner pixels of the digits, the border of MNIST) carries no information
  and is set to 0 in both splits.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks

__all__ = [
    "DataSplit",
    "MNIST_FILES",
    "MNIST_KINDS",
    "batch_indices",
    "batches",
    "gaussian_blobs",
    "load_digits",
    "load_idx",
    "load_mnist",
    "sample_batch",
    "split_data",
]

Array = jax.Array

DEFAULT_TEST_FRACTION = 0.2

MNIST_KINDS = ("mnist", "fashion_mnist")

# The four files of MNIST and Fashion-MNIST (both use the same names), each
# also accepted with a ``.gz`` suffix or with ``.idx`` in place of ``-idx``
# (as some mirrors spell them).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type code (third byte of the magic number) -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x_train", "y_train", "x_test", "y_test"],
    meta_fields=["n_classes", "name"])
@dataclasses.dataclass(frozen=True, eq=False)
class DataSplit:
  """A classification data set split into training and test parts.

  A pytree: the four arrays are leaves, ``n_classes`` and ``name`` are static,
  so a ``DataSplit`` passes through ``jax.jit`` and ``jax.tree.map``. Change
  a field with :meth:`replace`.

  Attributes:
    x_train: floating inputs, shape ``(n_train, *input_shape)``.
    y_train: ``int32`` labels in ``[0, n_classes)``, shape ``(n_train,)``.
    x_test: floating inputs, shape ``(n_test, *input_shape)``, same dtype.
    y_test: ``int32`` labels, shape ``(n_test,)``.
    n_classes: number of classes (labels are ``0 .. n_classes - 1``).
    name: the data set's name, e.g. ``"digits"``, ``"mnist"``, ``"blobs"``.
  """

  x_train: Array
  y_train: Array
  x_test: Array
  y_test: Array
  n_classes: int
  name: str

  @property
  def n_train(self) -> int:
    """Number of training examples, ``x_train.shape[0]``."""
    return self.x_train.shape[0]

  @property
  def n_test(self) -> int:
    """Number of test examples, ``x_test.shape[0]``."""
    return self.x_test.shape[0]

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one input, ``x_train.shape[1:]``."""
    return tuple(self.x_train.shape[1:])

  @property
  def n_features(self) -> int:
    """Number of input features, the product of :attr:`input_shape`."""
    return math.prod(self.input_shape)

  def replace(self, **changes: Any) -> DataSplit:
    """A copy with the given fields changed (``dataclasses.replace``)."""
    return dataclasses.replace(self, **changes)

  def __repr__(self) -> str:
    def arr(a):
      dtype = getattr(a, "dtype", None)
      shape = getattr(a, "shape", None)
      if dtype is None or shape is None:
        return repr(a)
      return f"{dtype}{list(shape)}"
    return (f"DataSplit(name={self.name!r}, n_classes={self.n_classes}, "
            f"x_train={arr(self.x_train)}, y_train={arr(self.y_train)}, "
            f"x_test={arr(self.x_test)}, y_test={arr(self.y_test)})")


# ---------------------------------------------------------------------------
# Validation helpers.


def _check_test_fraction(test_fraction: Any) -> float:
  if (isinstance(test_fraction, (bool, np.bool_))
      or not isinstance(test_fraction, (int, float, np.integer, np.floating))
      or not 0.0 < float(test_fraction) < 1.0):
    raise ValueError(
        f"`test_fraction` must be a number strictly between 0 and 1, got {test_fraction!r}")
  return float(test_fraction)


def _check_labels(y: np.ndarray, n_classes: int | None, what: str) -> int:
  """Checks integer labels in ``[0, n_classes)``; returns ``n_classes``."""
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"`{what}` must hold integer class labels, got dtype {y.dtype}")
  if y.size and y.min() < 0:
    raise ValueError(f"`{what}` must hold labels >= 0, got minimum {y.min()}")
  top = int(y.max()) + 1 if y.size else 0
  if n_classes is None:
    return max(top, 1)
  n_classes = _checks.check_int("n_classes", n_classes, 1)
  if top > n_classes:
    raise ValueError(
        f"`{what}` must hold labels in [0, n_classes) = [0, {n_classes}), got "
        f"label {top - 1}")
  return n_classes


def _check_array(name: str, value: Any) -> Any:
  """``value`` as an array (arrays, traced ones too, pass as they are); ValueError
  for ragged nesting or non-numbers."""
  if isinstance(value, jax.Array | np.ndarray) and value.dtype != object:
    return value
  try:
    arr = np.asarray(value)
  except ValueError as e:   # NumPy refuses ragged nested sequences
    raise ValueError(f"`{name}` must be a rectangular array (every example of the same "
                     f"shape), got a ragged sequence ({e})") from None
  if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                 or np.issubdtype(arr.dtype, np.bool_)):
    raise ValueError(f"`{name}` must be a numeric array, got dtype {arr.dtype}")
  return arr


def _check_xy(x: Any, y: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
  x_shape, y_shape = _check_array("x", x).shape, _check_array("y", y).shape
  if len(x_shape) < 1 or len(y_shape) != 1 or x_shape[0] != y_shape[0]:
    raise ValueError(
        f"`x` and `y` must have shapes (n, ...) and (n,) with the same n, got "
        f"{x_shape} and {y_shape}")
  return x_shape, y_shape


# ---------------------------------------------------------------------------
# Splitting and standardising.


def _round_half_up(value: float) -> int:
  return int(math.floor(value + 0.5))


def _split_indices(key: Array, y: np.ndarray, test_fraction: float,
                   stratify: bool) -> tuple[np.ndarray, np.ndarray]:
  """Train and test indices, each in the order of one random permutation."""
  n = y.shape[0]
  perm = np.asarray(jax.random.permutation(key, n))
  is_test = np.zeros(n, dtype=bool)
  if stratify:
    y_perm = y[perm]
    labels, counts = np.unique(y_perm, return_counts=True)
    # Largest remainders: class k gets floor or ceil of test_fraction * n_k,
    # and the total is round(test_fraction * n), as without stratification.
    quota = test_fraction * counts
    n_test = np.floor(quota).astype(np.int64)
    remaining = _round_half_up(test_fraction * n) - int(n_test.sum())
    n_test[np.argsort(n_test - quota, kind="stable")[:max(remaining, 0)]] += 1
    n_test = np.minimum(np.maximum(n_test, 1), counts - 1)
    for label, n_label_test in zip(labels, n_test):
      is_test[np.flatnonzero(y_perm == label)[:n_label_test]] = True
  else:
    n_test = min(max(_round_half_up(test_fraction * n), 1), n - 1)
    is_test[:n_test] = True
  return perm[~is_test], perm[is_test]


def _standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-feature zero mean, unit variance on the training split (float64)."""
  x_train = np.asarray(x_train, np.float64)
  x_test = np.asarray(x_test, np.float64)
  mean = x_train.mean(axis=0)
  std = x_train.std(axis=0)
  # Exactly constant features (max == min) go to 0; testing std > 0 instead
  # would let rounding in the mean turn a constant into noise of size ~1.
  constant = x_train.max(axis=0) == x_train.min(axis=0)
  scale = np.divide(1.0, std, out=np.zeros_like(std), where=~constant)
  return (x_train - mean) * scale, (x_test - mean) * scale


def _make_split(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                y_test: np.ndarray, *, standardize: bool, n_classes: int,
                dtype: np.dtype, name: str) -> DataSplit:
  if not (np.all(np.isfinite(x_train)) and np.all(np.isfinite(x_test))):
    raise ValueError(f"`x` must be finite, got nan or inf in data set {name!r}")
  if standardize:
    x_train, x_test = _standardize(x_train, x_test)
  return DataSplit(
      x_train=jnp.asarray(x_train, dtype), y_train=jnp.asarray(y_train, jnp.int32),
      x_test=jnp.asarray(x_test, dtype), y_test=jnp.asarray(y_test, jnp.int32),
      n_classes=n_classes, name=name)


def split_data(x: Any, y: Any, *, key: Array,
               test_fraction: float = DEFAULT_TEST_FRACTION, stratify: bool = True,
               standardize: bool = True, n_classes: int | None = None,
               dtype: Any = None, name: str = "data") -> DataSplit:
  """Splits labelled data into training and test parts, deterministically from ``key``.

  The split: a random permutation of the ``n`` examples is drawn from
  ``key`` (``jax.random.permutation``), and the test split gets
  ``round(test_fraction * n)`` examples (halves rounded up; at least 1, at
  most ``n - 1``). With ``stratify=False`` they are the first ones of the
  permutation. With ``stratify=True`` they are shared among the classes by
  largest remainders, class ``k`` with ``n_k`` examples giving its first
  ``floor`` or ``ceil`` of ``test_fraction * n_k`` in permutation order
  (then clipped so a class with ``n_k >= 2`` keeps at least one example in
  each part; a class with one example stays in training), so class
  proportions agree in both parts to within one example. Both parts keep
  the permutation's order, so they come shuffled. Then, with
  ``standardize=True``, each feature is standardised on the training split
  (see the module docstring).

  Args:
    x: inputs, array-like of shape ``(n, *input_shape)``, finite.
    y: integer labels, shape ``(n,)``, in ``[0, n_classes)``.
    key: PRNG key that fixes the split.
    test_fraction: share of the examples for the test split, in ``(0, 1)``.
    stratify: keep class proportions equal in both parts.
    standardize: per-feature standardisation on the training split.
    n_classes: number of classes; ``None`` means ``max(y) + 1``.
    dtype: floating dtype of the inputs; ``None`` is JAX's default float.
    name: the data set's name, stored in the result.

  Returns:
    A :class:`DataSplit`; inputs in ``dtype``, labels ``int32``.
  """
  _checks.check_key(key)
  _check_xy(x, y)
  test_fraction = _check_test_fraction(test_fraction)
  dtype = _checks.float_dtype(dtype, canonicalize=False)
  x = np.asarray(x)
  y = np.asarray(y)
  if x.shape[0] < 2:
    raise ValueError(f"`x` must hold at least 2 examples to split, got {x.shape[0]}")
  n_classes = _check_labels(y, n_classes, "y")
  train, test = _split_indices(key, y, test_fraction, bool(stratify))
  return _make_split(x[train], y[train], x[test], y[test], standardize=standardize,
                     n_classes=n_classes, dtype=dtype, name=name)


# ---------------------------------------------------------------------------
# Real data: scikit-learn's digits.


def load_digits(*, key: Array, test_fraction: float = DEFAULT_TEST_FRACTION,
                stratify: bool = True, standardize: bool = True,
                dtype: Any = None) -> DataSplit:
  """scikit-learn's handwritten digits: 1797 images of 8x8 pixels, 10 classes.

  The UCI optical-recognition digits as shipped inside scikit-learn
  (``sklearn.datasets.load_digits``, no download): each input is 64 pixel
  intensities in ``0 .. 16``, flattened row by row; classes hold 174 to 183
  examples. The split is :func:`split_data`'s (stratified by default), with
  ``test_fraction=0.2`` giving 1438 training and 359 test examples. With
  ``standardize=True`` each pixel is standardised on the training split;
  the pixels that are constant there (at least the always-blank ones) are 0.

  Args:
    key: PRNG key that fixes the train/test split.
    test_fraction: share of the examples for the test split, in ``(0, 1)``.
    stratify: keep class proportions equal in both parts.
    standardize: per-pixel standardisation on the training split; ``False``
      keeps the raw intensities ``0 .. 16`` (as floats).
    dtype: floating dtype of the inputs; ``None`` is JAX's default float.

  Returns:
    A :class:`DataSplit` named ``"digits"``: ``x_*`` of shape ``(n, 64)`` in
    ``dtype``, ``y_*`` ``int32`` of shape ``(n,)``, ``n_classes=10``.
  """
  test_fraction = _check_test_fraction(test_fraction)
  dtype = _checks.float_dtype(dtype, canonicalize=False)
  from sklearn import datasets  # Imported here: importing scikit-learn takes seconds.
  x, y = datasets.load_digits(return_X_y=True)
  return split_data(x, y, key=key, test_fraction=test_fraction, stratify=stratify,
                    standardize=standardize, n_classes=10, dtype=dtype, name="digits")


# ---------------------------------------------------------------------------
# Real data: IDX files (MNIST, Fashion-MNIST).


def _parse_idx(raw: bytes, source: str) -> np.ndarray:
  """Parses the bytes of one (decompressed) IDX file."""
  codes = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
    raise ValueError(
        f"`path` {source!r} is not an IDX file: it must start with the magic number "
        f"0x00 0x00 <type> <ndim> with type in {{{codes}}} and ndim >= 1, got "
        f"{raw[:4].hex(' ') or 'an empty file'}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(
        f"`path` {source!r} is a truncated IDX file: its header needs {header} bytes "
        f"for {ndim} dimensions, got {len(raw)}")
  dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  count = math.prod(dims)
  expected = header + count * dtype.itemsize
  if len(raw) != expected:
    problem = "truncated" if len(raw) < expected else "too long"
    raise ValueError(
        f"`path` {source!r} is a {problem} IDX file: dimensions {dims} of "
        f"{dtype.newbyteorder('=').name} need {expected} bytes, got {len(raw)}")
  data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
  return data.reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (the format of MNIST), plain or gzip-compressed.

  The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a magic
  number of four bytes ``0x00 0x00 <type> <ndim>``, then ``ndim`` dimension
  sizes as big-endian ``uint32``, then the values in C order, big-endian.
  Type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C``
  int32, ``0x0D`` float32, ``0x0E`` float64. Gzip compression is recognised
  from the file's first bytes (``1f 8b``), whatever its name.

  Args:
    path: the file.

  Returns:
    A NumPy array of shape ``dims`` in the file's type, native byte order.

  Raises:
    ValueError: if ``path`` is not an existing file, if the file is not IDX
      (wrong magic number), or if it is truncated or too long for the
      dimensions its header declares.
  """
  path = Path(path).expanduser()
  if not path.is_file():
    reason = "a directory" if path.is_dir() else "no such file"
    raise ValueError(f"`path` must be an existing IDX file, got {str(path)!r} ({reason})")
  raw = path.read_bytes()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
      raise ValueError(
          f"`path` {str(path)!r} is not a readable gzip file: {error}") from error
  return _parse_idx(raw, str(path))


def _find_idx(directory: Path, base: str) -> Path | None:
  dotted = base.replace("-idx", ".idx")
  for name in (base, base + ".gz", dotted, dotted + ".gz"):
    if (directory / name).is_file():
      return directory / name
  return None


def load_mnist(path: str | os.PathLike, *,
               kind: Literal["mnist", "fashion_mnist"] = "mnist",
               standardize: bool = True, flatten: bool = True,
               dtype: Any = None) -> DataSplit:
  """MNIST or Fashion-MNIST from the standard IDX files in a directory.

  Reads the four files of :data:`MNIST_FILES` (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``; each also found with a ``.gz`` suffix, or
  spelled ``train-images.idx3-ubyte``) from ``path``, with :func:`load_idx`.
  Nothing is downloaded. The published split is kept (60000 training,
  10000 test examples of 28x28 pixels, 10 classes for both kinds), in file
  order. Fashion-MNIST uses the same file names; ``kind`` sets the name.

  Args:
    path: directory holding the four files.
    kind: ``"mnist"`` or ``"fashion_mnist"``.
    standardize: per-pixel standardisation on the training split (pixels
      constant there, e.g. MNIST's border, become 0); ``False`` keeps the
      raw intensities ``0 .. 255`` as floats.
    flatten: inputs of shape ``(n, rows * cols)``; ``False`` keeps
      ``(n, rows, cols)``.
    dtype: floating dtype of the inputs; ``None`` is JAX's default float.

  Returns:
    A :class:`DataSplit` named ``kind``, ``n_classes=10``: ``x_*`` in
    ``dtype``, ``y_*`` ``int32``.

  Raises:
    ValueError: for an unknown ``kind``; if ``path`` is not a directory or
      lacks one of the files (the message lists the expected names); if a
      file is not IDX, is truncated, or does not hold uint8 images
      ``(n, rows, cols)`` and matching uint8 labels ``(n,)`` in ``0 .. 9``.
  """
  if kind not in MNIST_KINDS:
    raise ValueError(f"`kind` must be one of {', '.join(MNIST_KINDS)}, got {kind!r}")
  dtype = _checks.float_dtype(dtype, canonicalize=False)
  directory = Path(path).expanduser()
  expected = ", ".join(MNIST_FILES.values())
  if not directory.is_dir():
    reason = "a file, not a directory" if directory.exists() else "no such directory"
    raise ValueError(
        f"`path` must be a directory holding the {kind} IDX files ({expected}, "
        f"optionally .gz), got {str(directory)!r} ({reason})")
  found = {part: _find_idx(directory, base) for part, base in MNIST_FILES.items()}
  missing = [MNIST_FILES[part] for part, file in found.items() if file is None]
  if missing:
    raise ValueError(
        f"`path` {str(directory)!r} must hold the {kind} IDX files {expected} "
        f"(each optionally .gz); missing: {', '.join(missing)}")
  arrays = {part: load_idx(file) for part, file in found.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    images_file, labels_file = found[f"{split}_images"], found[f"{split}_labels"]
    if images.dtype != np.uint8 or images.ndim != 3:
      raise ValueError(
          f"`path` {str(images_file)!r} must hold uint8 images of shape (n, rows, "
          f"cols), got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
      raise ValueError(
          f"`path` {str(labels_file)!r} must hold uint8 labels of shape "
          f"({images.shape[0]},) to match {images_file.name}, got {labels.dtype} of "
          f"shape {labels.shape}")
    if labels.size and labels.max() >= 10:
      raise ValueError(
          f"`path` {str(labels_file)!r} must hold labels in 0 .. 9, got {labels.max()}")
  if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
    raise ValueError(
        f"`path` {str(directory)!r}: training and test images must have the same "
        f"size, got {arrays['train_images'].shape[1:]} and "
        f"{arrays['test_images'].shape[1:]}")
  x_train, x_test = arrays["train_images"], arrays["test_images"]
  if flatten:
    x_train = x_train.reshape(x_train.shape[0], -1)
    x_test = x_test.reshape(x_test.shape[0], -1)
  return _make_split(x_train, arrays["train_labels"], x_test, arrays["test_labels"],
                     standardize=standardize, n_classes=10, dtype=dtype, name=kind)


# ---------------------------------------------------------------------------
# Synthetic data.


def gaussian_blobs(*, key: Array, n_samples: int, n_features: int, n_classes: int = 2,
                   separation: float = 3.0, test_fraction: float = DEFAULT_TEST_FRACTION,
                   standardize: bool = True, dtype: Any = None) -> DataSplit:
  """A mixture of ``n_classes`` isotropic Gaussians in ``n_features`` dimensions.

  Class ``k`` has centre ``mu_k ~ N(0, separation^2 / (2 n_features) I)``
  (independent for each class) and examples ``x = mu_k + z`` with
  ``z ~ N(0, I)``, so ``E|mu_j - mu_k|^2 = separation^2``: ``separation``
  is the root-mean-square distance between two class centres in units of
  the within-class standard deviation. The ``n_samples`` labels are as
  balanced as possible (``i mod n_classes``); the split is
  :func:`split_data`'s, stratified. Everything is drawn in float32 from
  ``key`` (split once into centre, noise and split keys), so the data do
  not depend on 64-bit mode.

  Args:
    key: PRNG key.
    n_samples: examples in total (training plus test), ``>= 2 * n_classes``.
    n_features: input dimension, ``>= 1``.
    n_classes: number of classes, ``>= 2``.
    separation: rms distance between class centres, finite and ``>= 0``.
    test_fraction: share of the examples for the test split, in ``(0, 1)``.
    standardize: per-feature standardisation on the training split.
    dtype: floating dtype of the inputs; ``None`` is JAX's default float.

  Returns:
    A :class:`DataSplit` named ``"blobs"``: ``x_*`` of shape
    ``(n, n_features)`` in ``dtype``, ``y_*`` ``int32``.
  """
  n_classes = _checks.check_int("n_classes", n_classes, 2)
  n_samples = _checks.check_int("n_samples", n_samples, 2 * n_classes)
  n_features = _checks.check_int("n_features", n_features, 1)
  if (isinstance(separation, (bool, np.bool_))
      or not isinstance(separation, (int, float, np.integer, np.floating))
      or not math.isfinite(separation) or separation < 0):
    raise ValueError(f"`separation` must be a finite number >= 0, got {separation!r}")
  test_fraction = _check_test_fraction(test_fraction)
  dtype = _checks.float_dtype(dtype, canonicalize=False)
  key_centres, key_noise, key_split = jax.random.split(key, 3)
  centres = np.asarray(jax.random.normal(key_centres, (n_classes, n_features), jnp.float32),
                       np.float64) * (separation / math.sqrt(2 * n_features))
  noise = np.asarray(jax.random.normal(key_noise, (n_samples, n_features), jnp.float32),
                     np.float64)
  y = np.arange(n_samples) % n_classes
  x = centres[y] + noise
  return split_data(x, y, key=key_split, test_fraction=test_fraction, stratify=True,
                    standardize=standardize, n_classes=n_classes, dtype=dtype,
                    name="blobs")


# ---------------------------------------------------------------------------
# Minibatches.


def _check_batch_size(batch_size: Any, n: int, replace: bool) -> int:
  if not _checks.is_int(batch_size) or batch_size < 1:
    raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
  if not replace and batch_size > n:
    raise ValueError(
        f"`batch_size` must be <= the number of examples ({n}) when drawing without "
        f"replacement, got {batch_size}")
  return int(batch_size)


def sample_batch(x: Array, y: Array, *, key: Array, batch_size: int,
                 replace: bool = False) -> tuple[Array, Array]:
  """One random minibatch: a pure function of ``key``, for a jitted training step.

  Draws ``batch_size`` row indices uniformly, distinct with
  ``replace=False`` (``jax.random.choice``; costs a permutation of ``n``)
  or independent with ``replace=True`` (``jax.random.randint``; cheaper for
  large ``n``), and gathers them. Jits (``batch_size`` and ``replace`` must
  be static) and vmaps over ``key``, e.g. one batch per network.

  Args:
    x: inputs, shape ``(n, *input_shape)``, any dtype.
    y: labels, shape ``(n,)``.
    key: PRNG key.
    batch_size: rows per batch, ``>= 1`` (and ``<= n`` without replacement).
    replace: draw with replacement.

  Returns:
    ``(x_batch, y_batch)`` of shapes ``(batch_size, *input_shape)`` and
    ``(batch_size,)``, dtypes of ``x`` and ``y``.
  """
  x_shape, _ = _check_xy(x, y)
  n = x_shape[0]
  batch_size = _check_batch_size(batch_size, n, replace)
  if replace:
    index = jax.random.randint(key, (batch_size,), 0, n)
  else:
    index = jax.random.choice(key, n, (batch_size,), replace=False)
  return jnp.take(x, index, axis=0), jnp.take(y, index, axis=0)


def batch_indices(*, key: Array, n: int, batch_size: int) -> Array:
  """One epoch of shuffled minibatches, as row indices.

  A random permutation of ``0 .. n-1`` (``jax.random.permutation(key, n)``)
  cut into ``n // batch_size`` batches; the last ``n mod batch_size`` rows
  of the permutation are dropped, so every batch has the same shape (one
  compilation) and every row is used at most once per epoch. Jits with
  ``n`` and ``batch_size`` static; scan over the rows to run an epoch.

  Args:
    key: PRNG key of this epoch (e.g. ``jax.random.fold_in(key, epoch)``).
    n: number of examples, ``>= 1``.
    batch_size: rows per batch, ``1 <= batch_size <= n``.

  Returns:
    ``int32`` array of shape ``(n // batch_size, batch_size)``.
  """
  n = _checks.check_int("n", n, 1)
  batch_size = _check_batch_size(batch_size, n, replace=False)
  n_batches = n // batch_size
  perm = jax.random.permutation(key, n)[:n_batches * batch_size]
  return perm.reshape(n_batches, batch_size).astype(jnp.int32)


def batches(x: Array, y: Array, *, key: Array, batch_size: int,
            n_epochs: int = 1) -> Iterator[tuple[Array, Array]]:
  """Yields shuffled minibatches, epoch after epoch.

  Epoch ``e`` uses :func:`batch_indices` with key
  ``jax.random.fold_in(key, e)``, so the batches of an epoch do not depend
  on how many epochs came before (a resumed run sees the same batches).

  Args:
    x: inputs, shape ``(n, *input_shape)``.
    y: labels, shape ``(n,)``.
    key: PRNG key.
    batch_size: rows per batch, ``1 <= batch_size <= n``.
    n_epochs: number of passes over the data, ``>= 1``.

  Yields:
    ``(x_batch, y_batch)`` of shapes ``(batch_size, *input_shape)`` and
    ``(batch_size,)``, ``n_epochs * (n // batch_size)`` times.
  """
  # Validate eagerly: a generator body would only run at the first next().
  x_shape, _ = _check_xy(x, y)
  n = x_shape[0]
  batch_size = _check_batch_size(batch_size, n, replace=False)
  n_epochs = _checks.check_int("n_epochs", n_epochs, 1)
  x, y = jnp.asarray(x), jnp.asarray(y)

  def generate():
    for epoch in range(n_epochs):
      for index in batch_indices(key=jax.random.fold_in(key, epoch), n=n,
                                 batch_size=batch_size):
        yield jnp.take(x, index, axis=0), jnp.take(y, index, axis=0)

  return generate()
