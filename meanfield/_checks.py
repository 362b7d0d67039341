"""Eager argument checks shared by the theory modules.

Each check runs on concrete values only: inside ``jit`` (tracers) it is a
no-op, so the public functions stay traceable; called eagerly, bad input
raises ``ValueError`` before any work, naming the argument, the value and
what is allowed.
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


def check_nonnegative(name: str, x: Any, what: str = "a variance") -> None:
  """``x >= 0`` everywhere (nan passes: it propagates as data)."""
  a = _concrete(x)
  if a is not None and np.any(a < 0):
    raise ValueError(f"`{name}` must be >= 0 ({what}), got {_show(a, a < 0)}")


def check_correlation(name: str, x: Any) -> None:
  """``-1 <= x <= 1`` everywhere."""
  a = _concrete(x)
  if a is not None and np.any(np.abs(a) > 1):
    raise ValueError(f"`{name}` must lie in [-1, 1] (a correlation), got "
                     f"{_show(a, np.abs(a) > 1)}")


def check_positive_int(name: str, x: Any) -> int:
  """A Python integer ``>= 1`` (a static size such as ``depth``)."""
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {x!r}")
  return int(x)


def check_hyperparameters(sigma_w2: Any, sigma_b2: Any) -> None:
  check_nonnegative("sigma_w2", sigma_w2)
  check_nonnegative("sigma_b2", sigma_b2)
