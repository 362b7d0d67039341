"""The checked arguments of :func:`empirical.train` (besides the grid and the data).

Every check raises ``ValueError`` naming the argument, its value and what
is allowed, before any work starts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from empirical import _checks
from empirical import _grid
from empirical import conv as _conv
from empirical import description
from empirical._train_optim import check_clip_norm, check_optimizer
from meanfield.conv import Conv
from meanfield.network import MLP, Architecture

#: The variant fields of a meanfield.MLP that train runs (no dropout, alpha = 1).
RUNS = ("residual", "norm")
#: Default quantiles of each layer's weight entries.
WEIGHT_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
#: Default quantiles of each layer's singular values (besides min and max).
SV_QUANTILES = (0.1, 0.5, 0.9)


@dataclasses.dataclass(frozen=True)
class Options:
  """The validated training options (besides the grid)."""
  rates: list[float]
  optimizer: str
  momentum: float
  clip_norm: float | None
  n_steps: int
  batch_size: int
  steps: tuple[int, ...]
  probe_size: int | None
  weight_quantiles: tuple[float, ...]
  sv_quantiles: tuple[float, ...]
  probes: bool = True


def options(*, learning_rate, optimizer, momentum, clip_norm, n_steps, batch_size,
             record_every, record_steps, probe_size, weight_quantile, sv_quantile,
             probes=True) -> Options:
  if learning_rate is None:
    raise ValueError("`learning_rate` must be given (a finite number >= 0, or a list), got None")
  rates = [_checks.check_number("learning_rate", v, minimum=0.0)
           for v in _grid.values("learning_rate", learning_rate)]
  name = check_optimizer(optimizer)
  momentum = _checks.check_number("momentum", 0.9 if momentum is None else momentum,
                                  minimum=0.0, below=1.0)
  clip_norm = check_clip_norm(clip_norm)
  n_steps = _checks.check_int("n_steps", n_steps, 0)
  batch_size = _checks.check_int("batch_size", batch_size, 1)
  steps = _check_record_steps(record_steps, record_every, n_steps)
  if probe_size is not None:
    probe_size = _checks.check_int("probe_size", probe_size, 1)
  if not isinstance(probes, (bool, np.bool_)):
    raise ValueError(f"`probes` must be True or False, got {probes!r}")
  return Options(rates=rates, optimizer=name, momentum=momentum, clip_norm=clip_norm,
                  n_steps=n_steps, batch_size=batch_size, steps=steps, probe_size=probe_size,
                  weight_quantiles=_check_quantiles(
                      "weight_quantile",
                      WEIGHT_QUANTILES if weight_quantile is None else weight_quantile),
                  sv_quantiles=_check_quantiles(
                      "sv_quantile", SV_QUANTILES if sv_quantile is None else sv_quantile),
                  probes=bool(probes))


def _check_quantiles(name: str, values) -> tuple[float, ...]:
  arr = np.atleast_1d(np.asarray(values, dtype=float))
  if arr.ndim != 1 or arr.size == 0 or not np.all((arr >= 0) & (arr <= 1)):
    raise ValueError(f"`{name}` must be a non-empty 1-D sequence of numbers in [0, 1], got "
                     f"{values!r}")
  return tuple(arr.tolist())


def _check_record_steps(record_steps, record_every, n_steps: int) -> tuple[int, ...]:
  if record_steps is not None and record_every is not None:
    raise ValueError(f"`record_steps` and `record_every` must not both be given, got "
                     f"{record_steps!r} and {record_every!r}")
  if record_steps is None:
    every = (max(n_steps // 10, 1) if record_every is None
             else _checks.check_int("record_every", record_every, 1))
    return tuple(sorted(set(range(0, n_steps + 1, every)) | {n_steps}))
  steps = np.atleast_1d(np.asarray(record_steps)).tolist()
  if (not steps or not all(_checks.is_int(s) and 0 <= s <= n_steps for s in steps)
      or any(b <= a for a, b in zip(steps, steps[1:]))):
    raise ValueError(
        f"`record_steps` must be a non-empty increasing sequence of integers in "
        f"[0, n_steps] = [0, {n_steps}], got {record_steps!r}")
  return tuple(int(s) for s in steps)


def check_arch(arch, *, init) -> Conv | None:
  """``arch`` of :func:`empirical.train`: None for a :class:`meanfield.MLP` whose variant
  train runs (:data:`RUNS`), or the :class:`meanfield.Conv` (the circular CNN), whose
  footprint (where set) every ``init`` scheme must have; raises for another value."""
  allowed = ("meanfield.MLP(residual=..., norm=...) (the fully connected MLP; the default "
             "MLP() is the plain one) or meanfield.Conv(kernel_size=...) (the circular CNN)")
  if not isinstance(arch, Architecture):
    raise ValueError(f"`arch` of `empirical.train` must be {allowed}, got {arch!r}")
  if isinstance(arch, MLP):
    description.check_runs("empirical.train", arch, RUNS)
    return None
  if not isinstance(arch, Conv):
    raise ValueError(f"`arch` of `empirical.train` must be {allowed}: training has no "
                     f"networks of {arch!r}")
  _conv.check_footprint(arch, init)
  return arch


def check_spatial_size(arch: Conv, input_shape: tuple[int, ...]) -> None:
  """``arch.spatial_size``, where set, must be the positions of a 1-D CNN's ``input_shape``."""
  if arch.spatial_size is not None and (len(input_shape) != 2
                                        or input_shape[0] != arch.spatial_size):
    raise ValueError(f"`arch.spatial_size` must be None or the positions of a 1-D CNN's "
                     f"input_shape (spatial_size, channels), got {arch!r} with input_shape "
                     f"{tuple(input_shape)!r}")


def check_applies(*, arch, optimizer, probes, **given) -> None:
  """Raise for a keyword given (not None) that the chosen network or run does not use."""
  if given["momentum"] is not None:   # a bad value is named as such first
    _checks.check_number("momentum", given["momentum"], minimum=0.0, below=1.0)
  if given["momentum"] is not None and optimizer != "momentum":
    raise ValueError(f"`momentum` applies only to optimizer='momentum', got momentum="
                     f"{given['momentum']!r} with optimizer={optimizer!r}")
  if given["input_shape"] is not None and not isinstance(arch, Conv):
    raise ValueError(f"`input_shape` applies only to arch=meanfield.Conv(...), got "
                     f"input_shape={given['input_shape']!r} with arch={arch!r}")
  for name in ("weight_quantile", "sv_quantile"):
    if given[name] is not None and isinstance(probes, bool | np.bool_) and not probes:
      raise ValueError(f"`{name}` applies only with probes=True (probes=False records no "
                       f"weight summaries), got {name}={given[name]!r}")
  if given["sv_quantile"] is not None and isinstance(arch, Conv):
    raise ValueError(f"`sv_quantile` does not apply to arch={arch!r} (a CNN records "
                     f"no singular values), got sv_quantile={given['sv_quantile']!r}")
