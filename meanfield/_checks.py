"""Eager argument checks shared by the theory modules.

Each check runs on concrete values only: inside ``jit`` (tracers) it is a
no-op, so the public functions stay traceable; called eagerly, bad input
raises ``ValueError`` before any work, naming the argument, the value and
what is allowed. The checks that return their argument give concrete input
back as a NumPy array (lists become arrays) and traced input unchanged.

Every numeric argument first passes :func:`real`: ``None``, strings and
other non-numbers raise ``TypeError``; empty arrays and infinities raise
``ValueError``. NaN passes: it is data, and propagates to nan results.
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


def real(name: str, x: Any) -> Any:
  """``x`` as real numeric data: a NumPy array where concrete (lists too), traced input unchanged.

  Raises:
    TypeError: ``x`` is None, a string, or not an array of real numbers
      (booleans, complex and object arrays included).
    ValueError: ``x`` is empty or has an infinite element (nan passes).
  """
  if isinstance(x, (str, bytes)) or x is None:
    raise TypeError(f"`{name}` must be a real number or an array of them, got {x!r}")
  try:
    a = np.asarray(x)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return x
  except (TypeError, ValueError) as e:
    raise TypeError(f"`{name}` must be a real number or an array of them, got {x!r} "
                    f"({type(e).__name__}: {e})") from None
  if a.dtype.kind not in "iuf":
    raise TypeError(f"`{name}` must be a real number or an array of them, got {x!r} "
                    f"(dtype {a.dtype})")
  if a.size == 0:
    raise ValueError(f"`{name}` must not be empty, got {x!r} of shape {a.shape}")
  if a.dtype.kind == "f" and np.any(np.isinf(a)):
    raise ValueError(f"`{name}` must be finite (nan is allowed and propagates), got "
                     f"{_show(a, np.isinf(a))}")
  return x if isinstance(x, jax.Array) else a


def check(name: str, x: Any, ok, allowed: str) -> None:
  """Raise unless ``x`` is real (:func:`real`) and ``ok(x)`` holds everywhere (``ok`` maps a NumPy array to booleans)."""
  real(name, x)
  a = _concrete(x)
  if a is not None and not np.all(ok(a)):
    raise ValueError(f"`{name}` must be {allowed}, got {_show(a, ~ok(a))}")


def check_nonnegative(name: str, x: Any, what: str = "a variance") -> None:
  """``x`` real (:func:`real`) and ``>= 0`` everywhere (nan passes: it propagates as data)."""
  real(name, x)
  a = _concrete(x)
  if a is not None and np.any(a < 0):
    raise ValueError(f"`{name}` must be >= 0 ({what}), got {_show(a, a < 0)}")


def nonnegative(name: str, x: Any, what: str = "a variance") -> Any:
  """:func:`check_nonnegative`, returning ``x`` (a NumPy array where concrete and not a JAX array)."""
  check_nonnegative(name, x, what)
  return x if isinstance(x, jax.Array) else np.asarray(x)


def check_correlation(name: str, x: Any) -> None:
  """``x`` real (:func:`real`) and ``-1 <= x <= 1`` everywhere (nan passes)."""
  real(name, x)
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


#: The largest depth: scans over layers count in 32-bit integers.
MAX_DEPTH = 2 ** 31 - 1


def check_depth(x: Any, name: str = "depth") -> int:
  """A Python integer in ``[1, MAX_DEPTH]`` (a number of layers, the length of a scan)."""
  depth = check_positive_int(name, x)
  if depth > MAX_DEPTH:
    raise ValueError(f"`{name}` must be an integer in [1, {MAX_DEPTH}] (a number of layers, "
                     f"counted in 32-bit integers), got {x!r}")
  return depth


def check_hyperparameters(sigma_w2: Any, sigma_b2: Any) -> None:
  check_nonnegative("sigma_w2", sigma_w2)
  check_nonnegative("sigma_b2", sigma_b2)


def hyperparameters(sigma_w2: Any, sigma_b2: Any) -> tuple[Any, Any]:
  """Checked ``(sigma_w2, sigma_b2)``, lists turned into arrays."""
  return nonnegative("sigma_w2", sigma_w2), nonnegative("sigma_b2", sigma_b2)


_PROBE_SHAPE = (3, 2)


def check_elementwise(name: str, fn: Any) -> None:
  """``fn`` traces and maps a float array to a float array of the same shape (elementwise).

  Traced once with :func:`jax.eval_shape` on a ``(3, 2)`` float32 array, so
  a callable that needs concrete values (``math.tanh``) or reduces
  (``jnp.sum``) is refused with a ``ValueError`` naming ``name`` rather than
  failing, or giving finite garbage, deep inside a compiled program.
  """
  probe = jax.ShapeDtypeStruct(_PROBE_SHAPE, np.float32)
  try:
    out = jax.eval_shape(fn, probe)
  except Exception as e:  # noqa: BLE001 (any failure to trace means the same to the user)
    raise ValueError(
        f"`{name}` must be an elementwise jax.numpy function (traceable, e.g. jnp.tanh), "
        f"got {fn!r}, which fails on a traced array: {type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}") from None
  if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == _PROBE_SHAPE
          and np.issubdtype(out.dtype, np.floating)):
    got = (f"shape {out.shape}, dtype {out.dtype}" if isinstance(out, jax.ShapeDtypeStruct)
           else f"{type(out).__name__}")
    raise ValueError(
        f"`{name}` must be elementwise (a float array of the input's shape), got "
        f"{fn!r}, which maps shape {_PROBE_SHAPE} to {got}")
