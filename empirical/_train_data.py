"""The data of :func:`empirical.train`: its split, a CNN's input shape, the probe batch.

Inputs are flattened to ``(n, n_features)``; a CNN reshapes each example to
its ``input_shape`` inside the network. The probe batch is the first
``probe_size`` training examples, the same at every recorded step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks
from empirical import _grid
from empirical import data as _data
from empirical._train_options import Options

_DATA_ALLOWED = ("a DataSplit (empirical.data), 'digits', or a directory holding the "
                 "MNIST-style IDX files")


def resolve_data(data, dtype) -> tuple[_data.DataSplit, tuple[int, ...]]:
  """The split with flat inputs ``(n, n_features)``, and one input's shape as loaded."""
  if isinstance(data, _data.DataSplit):
    _grid.check_split(data)
    split = data
  elif isinstance(data, str) and data == "digits":
    split = _data.load_digits(key=jax.random.key(0), dtype=dtype)
  elif isinstance(data, (str, os.PathLike)):
    path = pathlib.Path(data).expanduser()
    if not path.is_dir():
      reason = "a file, not a directory" if path.exists() else "no such directory"
      raise ValueError(f"`data` must be {_DATA_ALLOWED}, got {str(data)!r} ({reason})")
    split = _data.load_mnist(path, dtype=dtype)
  else:
    raise ValueError(f"`data` must be {_DATA_ALLOWED}, got {type(data).__name__}")
  flat = split.replace(x_train=jnp.asarray(split.x_train, dtype).reshape(split.n_train, -1),
                       x_test=jnp.asarray(split.x_test, dtype).reshape(split.n_test, -1))
  return flat, split.input_shape


def input_shape(input_shape, loaded: tuple[int, ...], split: _data.DataSplit) -> tuple[int, ...]:
  """A CNN's ``(*spatial, channels)`` per example (see :func:`empirical.train`, ``input_shape``)."""
  n = split.n_features
  if input_shape is None:
    if len(loaded) >= 2:
      return tuple(loaded) + (1,)
    side = int(np.sqrt(n))
    if (split.name == "digits" or "mnist" in split.name) and side * side == n:
      return (side, side, 1)
    return (n, 1)
  shape = tuple(_grid.values("input_shape", input_shape))
  if (len(shape) < 2 or not all(_checks.is_int(v) and v >= 1 for v in shape)
      or int(np.prod(shape)) != n):
    raise ValueError(f"`input_shape` must be (*spatial, channels), at least 2 integers >= 1 "
                     f"whose product is the data's n_features = {n}, got {input_shape!r}")
  return tuple(int(v) for v in shape)


def with_probe_size(opts: Options, split: _data.DataSplit) -> Options:
  """``opts`` with the probe batch's size resolved against the data."""
  probe_size = min(256, split.n_train) if opts.probe_size is None else opts.probe_size
  if probe_size > split.n_train:
    raise ValueError(f"`probe_size` must be <= n_train = {split.n_train}, got {probe_size}")
  return dataclasses.replace(opts, probe_size=probe_size)


def probe_batch(split: _data.DataSplit, probe_size: int):
  """``(x, y)`` of the probe batch: the first ``probe_size`` training examples."""
  return split.x_train[:probe_size], split.y_train[:probe_size]


def fingerprint(split: _data.DataSplit) -> str:
  """SHA-256 of the split's arrays: part of a store's key."""
  h = hashlib.sha256()
  for a in (split.x_train, split.y_train, split.x_test, split.y_test):
    h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
  return h.hexdigest()
