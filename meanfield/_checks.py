"""Eager argument checks shared by the theory modules.

Each check runs on concrete values only: inside ``jit`` (tracers) it is a
no-op, so the public functions stay traceable; called eagerly, bad input
raises ``ValueError`` before any work, naming the argument, the value and
what is allowed. The checks that return their argument give concrete input
back as a NumPy array (lists become arrays) and traced input unchanged.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def _concrete(x: Any) -> np.ndarray | None:
  try:
    return np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None


def _show(a: np.ndarray, bad: np.ndarray) -> str:
  return repr(a.item()) if a.ndim == 0 else f"an array containing {a[bad].flat[0]!r}"


def concrete(x: Any) -> np.ndarray | None:
  """``x`` as a NumPy array, or None when it is traced."""
  return _concrete(x)


def show(a: np.ndarray, bad: np.ndarray) -> str:
  """The offending value for an error message: the scalar, or the first bad element."""
  return _show(a, bad)


def check(name: str, x: Any, ok, allowed: str) -> None:
  """Raise unless ``ok(x)`` holds everywhere (``ok`` maps a NumPy array to booleans)."""
  a = _concrete(x)
  if a is not None and not np.all(ok(a)):
    raise ValueError(f"`{name}` must be {allowed}, got {_show(a, ~ok(a))}")


def check_nonnegative(name: str, x: Any, what: str = "a variance") -> None:
  """``x >= 0`` everywhere (nan passes: it propagates as data)."""
  a = _concrete(x)
  if a is not None and np.any(a < 0):
    raise ValueError(f"`{name}` must be >= 0 ({what}), got {_show(a, a < 0)}")


def nonnegative(name: str, x: Any, what: str = "a variance") -> Any:
  """:func:`check_nonnegative`, returning ``x`` (a NumPy array where concrete and not a JAX array)."""
  check_nonnegative(name, x, what)
  return x if isinstance(x, jax.Array) else np.asarray(x)


def check_correlation(name: str, x: Any) -> None:
  """``-1 <= x <= 1`` everywhere."""
  a = _concrete(x)
  if a is not None and np.any(np.abs(a) > 1):
    raise ValueError(f"`{name}` must lie in [-1, 1] (a correlation), got "
                     f"{_show(a, np.abs(a) > 1)}")


def correlation(name: str, x: Any) -> Any:
  """:func:`check_correlation`, returning ``x`` (a NumPy array where concrete and not a JAX array)."""
  check_correlation(name, x)
  return x if isinstance(x, jax.Array) else np.asarray(x)


def check_positive_int(name: str, x: Any) -> int:
  """A Python integer ``>= 1`` (a static size such as ``depth``)."""
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {x!r}")
  return int(x)


def check_hyperparameters(sigma_w2: Any, sigma_b2: Any) -> None:
  check_nonnegative("sigma_w2", sigma_w2)
  check_nonnegative("sigma_b2", sigma_b2)


def hyperparameters(sigma_w2: Any, sigma_b2: Any) -> tuple[Any, Any]:
  """Checked ``(sigma_w2, sigma_b2)``, lists turned into arrays."""
  return nonnegative("sigma_w2", sigma_w2), nonnegative("sigma_b2", sigma_b2)
