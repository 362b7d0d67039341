"""Timing helpers shared by the benchmarks, and the record each benchmark returns.

A benchmark builds a :class:`Report`: timings (each the min / median / max of
``timeit.repeat``, per call, with compile time kept apart for jitted
functions), comparisons (a ratio of two timings taken in the same run, so
machine load affects both alike) and metrics (accuracies, sizes, anything
else worth a number). The runner (``python -m benchmarks``) writes the reports
to JSON and markdown.

Timing rules (after diffrax's and optax's benchmarks): jit, compile and warm
up first, call :func:`jax.block_until_ready` inside the timed region, report
the median with the spread (min, max) over repeats, and quote ratios rather
than absolute times on a shared machine.
"""

from __future__ import annotations

import dataclasses
import math
import time
import timeit
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["Timing", "Comparison", "Metric", "Report", "time_jitted", "time_call", "format_seconds"]


@dataclasses.dataclass(frozen=True)
class Timing:
  """Wall-clock seconds per call over ``repeats`` repeats of ``number`` calls each.

  ``compile_s`` is the time to trace and compile (jitted functions), or of the
  first, cold call (other functions), measured once before the repeats.
  ``per`` says what one call covers when it is scaled (e.g. extrapolated).
  """

  name: str
  median_s: float
  min_s: float
  max_s: float
  repeats: int
  number: int
  compile_s: float | None = None
  note: str = ""

  def scaled(self, factor: float, *, name: str, note: str) -> Timing:
    """The same measurement scaled by ``factor`` (e.g. per point x number of points).

    For extrapolating a loop timed on a subset to the full problem; ``note``
    must say so. ``compile_s`` is kept unscaled.
    """
    return dataclasses.replace(self, name=name, median_s=self.median_s * factor,
                               min_s=self.min_s * factor, max_s=self.max_s * factor, note=note)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """``ratio = slower.median_s / faster.median_s`` (both from the same run); >1 means ``faster`` wins."""

  name: str
  ratio: float
  slower: str
  faster: str
  note: str = ""


@dataclasses.dataclass(frozen=True)
class Metric:
  """Any other number a benchmark reports (an error, a size, a count)."""

  name: str
  value: float
  unit: str = ""
  note: str = ""


def _stats(name: str, times: list[float], number: int, compile_s: float | None, note: str) -> Timing:
  per_call = sorted(t / number for t in times)
  n = len(per_call)
  median = per_call[n // 2] if n % 2 else 0.5 * (per_call[n // 2 - 1] + per_call[n // 2])
  return Timing(name=name, median_s=median, min_s=per_call[0], max_s=per_call[-1],
                repeats=n, number=number, compile_s=compile_s, note=note)


def _check_counts(repeats: int, number: int) -> None:
  if not (isinstance(repeats, int) and repeats >= 1):
    raise ValueError(f"`repeats` must be an integer >= 1, got {repeats!r}")
  if not (isinstance(number, int) and number >= 1):
    raise ValueError(f"`number` must be an integer >= 1, got {number!r}")


def time_jitted(fn: Callable[..., Any], *args: Any, name: str, repeats: int = 5, number: int = 1,
                note: str = "", **kwargs: Any) -> Timing:
  """Time ``jax.jit(fn)(*args, **kwargs)`` warm; compile is timed separately.

  ``fn`` may already be jitted. Array arguments are traced; keyword arguments
  are static (hashable). Ahead-of-time lowering and compiling is timed as
  ``compile_s``; one warm-up call follows; then ``timeit.repeat`` with
  :func:`jax.block_until_ready` inside the timed call. Call it inside
  ``with jax.enable_x64(True):`` to time the 64-bit program.
  """
  _check_counts(repeats, number)
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn, static_argnames=tuple(kwargs))
  start = time.perf_counter()
  compiled = jitted.lower(*args, **kwargs).compile()
  compile_s = time.perf_counter() - start
  call = lambda: jax.block_until_ready(compiled(*args))  # noqa: E731  (static kwargs are baked in)
  call()
  times = timeit.repeat(call, repeat=repeats, number=number)
  return _stats(name, times, number, compile_s, note)


def time_call(fn: Callable[[], Any], *, name: str, repeats: int = 5, number: int = 1,
              warmup: bool = True, note: str = "") -> Timing:
  """Time a zero-argument callable (any Python; JAX results are blocked on).

  With ``warmup`` the first call is timed on its own as ``compile_s`` (for a
  function that jits inside, it holds tracing and compiling) and excluded
  from the statistics.
  """
  _check_counts(repeats, number)
  call = lambda: jax.block_until_ready(fn())  # noqa: E731
  compile_s = None
  if warmup:
    start = time.perf_counter()
    call()
    compile_s = time.perf_counter() - start
  times = timeit.repeat(call, repeat=repeats, number=number)
  return _stats(name, times, number, compile_s, note)


@dataclasses.dataclass
class Report:
  """What one benchmark measured. Add to it with the methods; each also prints a line."""

  timings: list[Timing] = dataclasses.field(default_factory=list)
  comparisons: list[Comparison] = dataclasses.field(default_factory=list)
  metrics: list[Metric] = dataclasses.field(default_factory=list)
  params: dict[str, Any] = dataclasses.field(default_factory=dict)
  verbose: bool = True

  def _print(self, line: str) -> None:
    if self.verbose:
      print(line, flush=True)

  def add_timing(self, timing: Timing) -> Timing:
    self.timings.append(timing)
    compile_part = f", first/compile {format_seconds(timing.compile_s)}" if timing.compile_s is not None else ""
    self._print(f"  {timing.name}: median {format_seconds(timing.median_s)} "
                f"(min {format_seconds(timing.min_s)}, max {format_seconds(timing.max_s)}, "
                f"{timing.repeats}x{timing.number}{compile_part})")
    return timing

  def time_jitted(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Timing:
    """:func:`time_jitted`, recorded."""
    return self.add_timing(time_jitted(fn, *args, **kwargs))

  def time_call(self, fn: Callable[[], Any], **kwargs: Any) -> Timing:
    """:func:`time_call`, recorded."""
    return self.add_timing(time_call(fn, **kwargs))

  def compare(self, name: str, slower: Timing, faster: Timing, note: str = "") -> Comparison:
    """Record ``slower.median_s / faster.median_s``."""
    comparison = Comparison(name=name, ratio=slower.median_s / faster.median_s,
                            slower=slower.name, faster=faster.name, note=note)
    self.comparisons.append(comparison)
    self._print(f"  {name}: {comparison.ratio:.4g}x ({slower.name} / {faster.name})")
    return comparison

  def metric(self, name: str, value: float, *, unit: str = "", note: str = "") -> Metric:
    """Record a number (an error, a size)."""
    m = Metric(name=name, value=float(value), unit=unit, note=note)
    self.metrics.append(m)
    self._print(f"  {name}: {format_number(m.value)}{' ' + unit if unit else ''}")
    return m

  def to_dict(self) -> dict[str, Any]:
    return {
        "params": self.params,
        "timings": [dataclasses.asdict(t) for t in self.timings],
        "comparisons": [dataclasses.asdict(c) for c in self.comparisons],
        "metrics": [dataclasses.asdict(m) for m in self.metrics],
    }


def format_seconds(s: float | None) -> str:
  """``0.00123`` -> ``'1.23 ms'``."""
  if s is None or not math.isfinite(s):
    return str(s)
  for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
    if abs(s) >= scale or unit == "ns":
      return f"{s / scale:.3g} {unit}"
  raise AssertionError("unreachable")


def format_number(x: float) -> str:
  """Three significant digits, scientific when small or large."""
  if not math.isfinite(x):
    return str(x)
  return f"{x:.3g}"
