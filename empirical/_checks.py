"""Eager argument checks shared by the experiment modules (one copy each).

Every check runs before any work and raises ``ValueError`` naming the
argument, its value and what is allowed, in the form "`depth` must be an
integer >= 1, got 0". Modules of :mod:`empirical` import them from here;
the grid-level checks (lists of values, activations and inits keyed for a
store) are in :mod:`empirical._grid`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_int", "is_number", "check_int", "check_number", "check_variance",
           "check_variances", "float_dtype", "check_key", "check_store"]


def is_int(value: Any) -> bool:
  """An integer (Python or NumPy), not a bool."""
  return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def is_number(value: Any) -> bool:
  """A real number (Python or NumPy), not a bool, a string or None."""
  return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
      value, bool | np.bool_)


def check_int(name: str, value: Any, minimum: int) -> int:
  """``value`` as an ``int`` if it is an integer ``>= minimum``."""
  if not is_int(value) or value < minimum:
    raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
  return int(value)


def check_number(name: str, value: Any, *, minimum: float, strict: bool = False,
                 below: float | None = None) -> float:
  """A finite number ``>= minimum`` (``> minimum`` if ``strict``; ``< below`` if
  given) as a float. Bools and strings are refused; 0-d arrays pass."""
  try:
    v = math.nan if isinstance(value, bool | np.bool_ | str | bytes) else float(value)
  except (TypeError, ValueError):
    v = math.nan
  ok = math.isfinite(v) and (v > minimum if strict else v >= minimum)
  if below is not None:
    ok = ok and v < below
  if not ok:
    allowed = f"{'>' if strict else '>='} {minimum:g}" + (
        f" and < {below:g}" if below is not None else "")
    raise ValueError(f"`{name}` must be a finite number {allowed}, got {value!r}")
  return v


def check_variance(name: str, value: Any) -> float:
  """A finite number ``>= 0`` (a variance) as a float."""
  return check_number(name, value, minimum=0.0)


def check_variances(name: str, vals: list) -> list[float]:
  """Each value a finite real number ``>= 0`` (no 0-d arrays); returned as floats."""
  for v in vals:
    if not is_number(v):
      raise ValueError(f"`{name}` must be a finite number >= 0, got {v!r}")
    check_variance(name, v)
  return [float(v) for v in vals]


def float_dtype(dtype: Any, *, canonicalize: bool = True) -> np.dtype:
  """The float dtype meant by ``dtype``; ``None`` is JAX's default float
  (float32, float64 under x64). With ``canonicalize``, the dtype JAX will use
  (float64 becomes float32 without x64); without, the dtype as asked for."""
  try:
    resolved = np.dtype(jnp.float64 if dtype is None else dtype)
    if canonicalize or dtype is None:
      resolved = np.dtype(jax.dtypes.canonicalize_dtype(resolved))
  except TypeError:
    resolved = None
  if resolved is None or not jnp.issubdtype(resolved, jnp.floating):
    raise ValueError(
        f"`dtype` must be None or a floating dtype (float16, bfloat16, float32, float64), "
        f"got {dtype!r}")
  return resolved


def check_key(key: Any, name: str = "key") -> Any:
  """``key`` if it is a PRNG key (new-style or raw ``uint32`` of shape ``(2,)``)."""
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.ndim == 0:
      return key
  elif (isinstance(key, jax.Array | np.ndarray) and key.dtype == np.uint32
        and key.ndim == 1 and key.size >= 2):
    return key
  raise ValueError(f"`{name}` must be a PRNG key (jax.random.key(0)), got {key!r}")


def check_store(store: Any) -> str | None:
  """``store`` as a path string: a directory, or a path where one can be made."""
  if store is None:
    return None
  if not isinstance(store, str | os.PathLike):
    raise ValueError(f"`store` must be a directory path (str or os.PathLike), got {store!r}")
  path = os.fspath(store)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"`store` must be a directory (created if missing), got {path!r}, "
                     f"which is a file")
  return path
