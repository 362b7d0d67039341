"""Helpers shared by the figures of random networks over many seeds.

- :func:`band`: the median over seeds with a quantile band (10-90% by
  default), robust to the heavy tails of products of random matrices and to
  the ``inf``/``nan`` of overflowed networks.
- :func:`preset_sigma_w2`: the ``sigma_w2`` (in the theory's terms,
  ``fan_in E[W_ij^2]``) of named schemes such as ``xavier_normal`` or
  ``normal(0.01)``, so that several of them can run as *one* sweep of
  ``init="gaussian"`` over ``sigma_w2`` (one compiled program, common random
  numbers) when every layer has the same fan-in and the scheme is Gaussian.
- :func:`theory_post_var`: the mean-field variance of the post-activations
  (:func:`meanfield.post_activation_variance`) on NumPy data, nan for nan/inf.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

import empirical
import meanfield

__all__ = ["QUANTILES", "quantiles", "band", "preset_sigma_w2", "theory_post_var", "FLOAT32_MAX", "FLOAT32_TINY"]

#: The band drawn around the median over seeds.
QUANTILES = (0.1, 0.9)
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)

# Schemes whose standard draw is an exact Gaussian: at equal sigma_w2 they are
# the same distribution as init="gaussian".
_GAUSSIAN_STANDARDS = ("gaussian", "xavier_normal", "he_normal", "lecun_normal")


def quantiles(values: np.ndarray, axis: int = 0, q=(0.5, *QUANTILES)) -> np.ndarray:
  """``(len(q), ...)`` quantiles over ``axis``, ignoring nan (inf counts as large)."""
  values = np.asarray(values, np.float64)
  with warnings.catch_warnings(), np.errstate(invalid="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns (overflowed layers) give nan
    return np.nanquantile(np.where(np.isnan(values), np.nan, values), q, axis=axis)


def band(ax, x, values, *, color, label=None, alpha=0.22, **line_kwargs):
  """Plot the median of ``values`` ``(seed, x)`` over seeds and its 10-90% band.

  Non-finite and (on a log axis) non-positive values are left out of the
  line, so an overflowed or underflowed seed shows as a gap, not a crash.
  Returns the median line.
  """
  med, lo, hi = quantiles(values)
  log = ax.get_yscale() == "log"
  ok = np.isfinite(med) & ((med > 0) if log else True)
  okb = np.isfinite(lo) & np.isfinite(hi) & (((lo > 0) & (hi > 0)) if log else True)
  (line,) = ax.plot(np.where(ok, x, np.nan), np.where(ok, med, np.nan), color=color,
                    label=label, **line_kwargs)
  ax.fill_between(x, np.where(okb, lo, np.nan), np.where(okb, hi, np.nan), color=color,
                  alpha=alpha, lw=0)
  return line


def preset_sigma_w2(name: str, *, fan_in: int, fan_out: int) -> float:
  """``fan_in E[W_ij^2]`` of the scheme ``name`` for a ``(fan_in, fan_out)`` layer.

  Raises ``ValueError`` for a scheme that is not Gaussian (uniform,
  orthogonal, truncated, constant, zeros), which ``init="gaussian"`` does
  not reproduce.
  """
  scheme = empirical.init(name)
  if scheme.name not in _GAUSSIAN_STANDARDS and not scheme.name.startswith("normal("):
    raise ValueError(
        f"`name` must be a Gaussian scheme ({', '.join(_GAUSSIAN_STANDARDS)} or normal(std)), "
        f"got {name!r}")
  return float(scheme.sigma_w2_effective(None, fan_in, fan_out))


def theory_post_var(q: np.ndarray, activation: str) -> np.ndarray:
  """:func:`meanfield.post_activation_variance` in float64 on NumPy data.

  ``q`` any shape; nan and inf (an overflowed theory) give nan.
  """
  q = np.asarray(q, np.float64)
  finite = np.isfinite(q)
  with jax.enable_x64(True):
    var = meanfield.post_activation_variance(np.where(finite, q, 1.0), activation=activation)
    var = np.asarray(var, np.float64)
  return np.where(finite, var, np.nan)
