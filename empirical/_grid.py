"""Validation of the grid arguments that the experiment entry points share.

:func:`empirical.sweep`, :func:`empirical.train` and
:func:`empirical.jacobian_spectra` take ``activation``, ``init``, ``width``,
``depth``, ``sigma_w2`` and ``sigma_b2`` as one value or a list (a list makes
a dimension of the result). Everything here raises ``ValueError`` naming the
argument, its value and what is allowed, before any work starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from empirical import inits as _inits
from empirical import models as _models
from meanfield.activations import Activation, activation as _activation


def is_list(value: Any) -> bool:
  """Whether ``value`` is a list of grid values (a sequence or a 1-D array)."""
  return isinstance(value, list | tuple | range) or (
      isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 1)


def values(name: str, value: Any) -> list:
  """``value`` as a non-empty list of grid values (a scalar becomes ``[value]``)."""
  if is_list(value):
    out = list(value.tolist() if isinstance(value, np.ndarray | jax.Array) else value)
    if not out:
      raise ValueError(f"`{name}` must be a value or a non-empty list, got {value!r}")
    return out
  if isinstance(value, np.ndarray | jax.Array):
    if np.ndim(value) != 0:
      raise ValueError(f"`{name}` must be a value or a 1-D list, got shape {np.shape(value)}")
    value = value.item()
  return [value]


def check_variances(name: str, vals: list) -> list[float]:
  """Each value a finite number ``>= 0``; returned as floats."""
  for v in vals:
    if isinstance(v, bool | np.bool_):
      raise ValueError(f"`{name}` must be a finite number >= 0, got {v!r}")
    _inits._check_variance(name, v)
  return [float(v) for v in vals]


def key_data(key: Any) -> list[int]:
  """The words of a PRNG key (new-style or raw ``uint32``), for provenance and stores."""
  if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
    key = jnp.asarray(key)
    if key.dtype != jnp.uint32:
      raise ValueError(f"`key` must be a PRNG key (jax.random.key(0)), got {key!r}")
    return np.asarray(key).ravel().tolist()
  return np.asarray(jax.random.key_data(key)).ravel().tolist()


@dataclasses.dataclass(frozen=True)
class NetworkGrid:
  """The validated grid of a sweep or a training run.

  Attributes:
    key_data: the key's words.
    activations, inits, widths, depths: the values along each axis.
    n_seeds: networks per grid point.
    sigma_w2: weight variances, or ``[None]`` for schemes that fix it (He,
      LeCun, ...).
    sigma_b2: bias variances.
  """

  key_data: list[int]
  activations: list[Activation]
  inits: list[_inits.Init]
  widths: list[int]
  depths: list[int]
  n_seeds: int
  sigma_w2: list[float | None]
  sigma_b2: list[float]


def network_grid(*, key, activation, init, width, depth, n_seeds, sigma_w2, sigma_b2,
                 residual, norm, verb: str) -> NetworkGrid:
  """Validate the grid arguments of :func:`empirical.sweep` or :func:`empirical.train`.

  ``verb`` names the caller's action in the message for mixed schemes
  (``"sweep"``, ``"train"``).
  """
  kd = key_data(key)
  acts = [_activation(a) for a in values("activation", activation)]
  schemes = [_inits.init(s) for s in values("init", init)]
  widths = [_models._check_int("width", w, 1) for w in values("width", width)]
  depths = [_models._check_int("depth", d, 1) for d in values("depth", depth)]
  n_seeds = _models._check_int("n_seeds", n_seeds, 1)
  _models.check_architecture(norm=norm)
  if not isinstance(residual, bool):
    raise ValueError(f"`residual` must be True or False, got {residual!r}")
  uses = {s.uses_sigma_w2 for s in schemes}
  if len(uses) > 1:
    raise ValueError(
        f"`init` must not mix schemes by variance and schemes that fix it, got "
        f"{[s.name for s in schemes]}; {verb} them separately")
  if uses == {True}:
    if sigma_w2 is None:
      raise ValueError(f"`sigma_w2` must be given for init {[s.name for s in schemes]}, got None")
    sw2s = check_variances("sigma_w2", values("sigma_w2", sigma_w2))
  else:
    if sigma_w2 is not None:
      schemes[0].check_sigma_w2(sigma_w2)   # raises, naming the scheme
    sw2s = [None]
  sb2s = check_variances("sigma_b2", values("sigma_b2", sigma_b2))
  return NetworkGrid(key_data=kd, activations=acts, inits=schemes, widths=widths,
                     depths=depths, n_seeds=n_seeds, sigma_w2=sw2s, sigma_b2=sb2s)
