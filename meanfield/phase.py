"""The order-to-chaos phase diagram over ``(sigma_w2, sigma_b2)``.

The critical line ``chi_1 = 1`` separates the ordered phase (``chi_1 < 1``,
``c* = 1``: inputs collapse) from the chaotic phase (``chi_1 > 1``,
``c* < 1``) (Poole et al. 2016; Schoenholz et al. 2017). Parametrised by the
fixed-point length ``q`` it is explicit:

.. math::

  \\sigma_w^2(q) = 1 / E[\\phi'(\\sqrt{q} z)^2], \\qquad
  \\sigma_b^2(q) = q - \\sigma_w^2(q) E[\\phi(\\sqrt{q} z)^2],

kept where ``sigma_b2 >= 0``. :func:`critical_sigma_w2` inverts the second
equation for ``q`` (ladder bracketing and safeguarded Newton, as for ``q*``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from meanfield import _checks, _critical
from meanfield._fixed_points import c_root, q_root
from meanfield._integrals import as_arrays, float_dtype, length_map_slope, second_moments
from meanfield.activations import Activation, activation as _activation
from meanfield.depth import depth_scale
from meanfield.network import MLP, Architecture, accepts_network, check_variants

__all__ = ["CriticalLine", "critical_line", "critical_sigma_w2", "phase_diagram",
           "ORDERED", "CRITICAL", "CHAOTIC", "UNDEFINED"]

Array = jax.Array
ArrayLike = Any

#: Integer phase codes of :func:`phase_diagram`.
UNDEFINED, ORDERED, CRITICAL, CHAOTIC = -1, 0, 1, 2

_jit = functools.partial(jax.jit, static_argnames=("act",))
# Chaotic points per c* solve in phase_diagram.
_CHUNK = 4096


class CriticalLine(NamedTuple):
  """Points ``(sigma_w2, sigma_b2)`` of the critical line; arrays of one shape."""

  sigma_w2: Array
  sigma_b2: Array


@_jit
def _critical_line(act, q):
  (q,) = as_arrays(q)
  m2, dm2 = second_moments(act, q)
  sigma_w2 = 1 / dm2
  return CriticalLine(sigma_w2=sigma_w2, sigma_b2=q - sigma_w2 * m2)


def critical_line(q: ArrayLike, *, activation: Any) -> CriticalLine:
  """The critical line at fixed-point length ``q`` (``chi_1 = 1`` with ``q* = q``).

  ``sigma_w2 = 1 / E[phi'(sqrt(q) z)^2]``, ``sigma_b2 = q - sigma_w2 E[phi(sqrt(q) z)^2]``
  (Schoenholz et al. 2017, Sec. 3). Where ``sigma_b2 < 0`` the point is not
  realisable (no non-negative bias variance); it is returned as computed.

  Args:
    q: lengths ``>= 0``, any shape.
    activation: a name, an Activation or a callable.
  """
  act = _activation(activation)
  q = _checks.nonnegative("q", q, "a length")
  return _critical_line(act, q)


@_jit
def _critical_sigma_w2(act: Activation, sigma_b2: ArrayLike) -> Array:
  sigma_w2, _, reached = _critical.critical_point(act, sigma_b2)
  return jnp.where(reached, sigma_w2, jnp.nan)


@accepts_network
def critical_sigma_w2(*, sigma_b2: ArrayLike, activation: Any) -> Array:
  """The weight variance on the order-to-chaos line, ``chi_1(q*) = 1``, at bias variance ``sigma_b2``.

  Solves ``sigma_b2 = q - E[phi^2] / E[phi'^2]`` (at ``sqrt(q) z``) for the
  smallest ``q >= 0`` and returns ``1 / E[phi'(sqrt(q) z)^2]`` (Schoenholz
  et al. 2017: tanh, ``sigma_b2 = 0.05`` gives 1.761). nan where the line
  does not reach ``sigma_b2`` (ReLU and linear: only ``sigma_b2 = 0``, where
  the value is 2 and 1), and nan where ``q`` is not the length a network
  reaches there: where ``q`` is an unstable fixed point of the length map
  (GELU at ``sigma_b2`` below about 0.2: the length runs to a smaller ``q*``
  with ``chi_1 < 1``), or the length grows past it (GELU at ``sigma_b2 = 0``).
  So wherever a value is given, :func:`meanfield.chi_1` there is 1. The rule
  is the same in :func:`phase_diagram` and :func:`meanfield.critical_init`:
  ``q`` is reached where :func:`meanfield.q_star` agrees with it, or every
  length between the two is fixed to rounding (hard_tanh or leaky ReLU at
  ``sigma_b2 = 0``).

  Args:
    sigma_b2: bias variances ``>= 0``, any shape.
    activation: a name, an Activation or a callable.

  Returns:
    Shape and floating dtype of ``sigma_b2``.
  """
  act = _activation(activation)
  sigma_b2 = _checks.nonnegative("sigma_b2", sigma_b2)
  return _critical_sigma_w2(act, sigma_b2)


@_jit
def _length_quantities(act, sigma_w2, sigma_b2):
  fp = q_root(act, sigma_w2, sigma_b2)
  chi = sigma_w2 * second_moments(act, jnp.where(jnp.isfinite(fp.value), fp.value, 1))[1]
  chi = jnp.where(jnp.isnan(fp.value), jnp.nan, chi)
  # an infinite q* keeps chi_1 only where a closed form defines it
  chi = jnp.where(jnp.isinf(fp.value), sigma_w2 * second_moments(act, fp.value)[1], chi)
  return fp, chi, depth_scale(length_map_slope(act, sigma_w2, fp.value))


@_jit
def _correlation_quantities(act, sigma_w2, sigma_b2, q):
  # traced: one program per chunk size, with the 2-D fallback inside it (an eager call would
  # compile the fallback anew for every count of points that need it)
  fp, chi_c = c_root(act, sigma_w2, sigma_b2, q)
  return fp.value, fp.converged, chi_c


@accepts_network
def phase_diagram(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                  critical_tol: float = 1e-3, arch: Architecture = MLP()) -> xr.Dataset:
  """Fixed points, slopes, depth scales and phase on the grid ``sigma_w2 x sigma_b2``.

  Args:
    sigma_w2: 1-D array of weight variances (``>= 0``).
    sigma_b2: 1-D array of bias variances (``>= 0``).
    activation: a name, an Activation or a callable.
    critical_tol: a point is critical where ``|chi_1 - 1| <= critical_tol``.
    arch: the architecture value (:class:`meanfield.network.Architecture`):
      the plain :class:`meanfield.MLP` (default; its variants are not
      covered here), or another whose ``phase_diagram`` hook extends the
      MLP's Dataset. ``meanfield.Conv(kernel_size=k,
      spatial_size=n)`` adds, over dims ``("sigma_w2", "sigma_b2",
      "frequency")``, ``xi_q_mode`` and ``xi_c_mode`` (``-1/log|slope
      lambda_f|``), and ``eigenvalue`` (``lambda_f``) over ``frequency``
      (``f = 0..n-1``); the phase boundary is the MLP's (mode 0 carries it).

  Returns:
    An ``xarray.Dataset`` over dims ``("sigma_w2", "sigma_b2")`` with
    ``q_star, c_star, chi_1, chi_c, xi_q, xi_c`` (as the functions of the
    same names), ``converged`` (both solvers converged), ``phase`` (int8:
    -1 undefined where chi_1 is nan, 0 ordered ``chi_1 < 1 - tol``,
    1 critical, 2 chaotic ``chi_1 > 1 + tol``; see its ``flag_values`` and
    ``flag_meanings`` attributes) and ``critical_sigma_w2`` over
    ``sigma_b2`` (:func:`critical_sigma_w2`: nan where no network reaches
    the critical line). Values are float64 when 64-bit is enabled. The ``c*``
    solve runs only at chaotic points (elsewhere ``c* = 1``), in chunks of
    up to 4096 points: one compiled program per activation serves any grid
    (smaller grids pad their chaotic points to a power of two).
  """
  act = _activation(activation)
  for name, value in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
    if np.ndim(_checks.real(name, value)) != 1:
      raise ValueError(f"`{name}` must be a 1-D array of grid values, got shape {np.shape(value)}")
  _checks.check("critical_tol", critical_tol, lambda t: t >= 0, ">= 0")
  _checks.check_hyperparameters(sigma_w2, sigma_b2)
  check_variants("phase_diagram", arch)
  dtype = float_dtype(np.asarray(sigma_w2), np.asarray(sigma_b2))
  w_axis = np.asarray(jnp.asarray(sigma_w2, dtype))
  b_axis = np.asarray(jnp.asarray(sigma_b2, dtype))
  sw2, sb2 = np.meshgrid(w_axis, b_axis, indexing="ij")

  fp_q, chi1, xi_q = _length_quantities(act, sw2, sb2)
  q = np.asarray(fp_q.value)
  chi1_np = np.asarray(chi1)
  valid = np.isfinite(q)
  c_star = np.where(valid, 1.0, np.nan).astype(q.dtype)
  chi_c = np.where(valid, chi1_np, np.nan).astype(q.dtype)
  c_conv = np.ones(q.shape, bool)
  chaotic = valid & (q > 0) & (chi1_np > 1)
  index = np.nonzero(chaotic.ravel())[0]
  # The chaotic points in chunks of one size (a power of two up to _CHUNK, padded by
  # repeating a point): one compiled program serves every grid.
  size = min(_CHUNK, 1 << int(np.ceil(np.log2(max(index.size, 1)))))
  for start in range(0, index.size, size):
    part = index[start:start + size]
    take = np.concatenate([part, np.full(size - part.size, part[0])])
    flat = lambda a: np.asarray(a).ravel()[take]
    c_val, c_ok, chi_val = _correlation_quantities(act, flat(sw2), flat(sb2), flat(q))
    for out, new in ((c_star, c_val), (chi_c, chi_val), (c_conv, c_ok)):
      out.reshape(-1)[part] = np.asarray(new)[: part.size]
  phase = np.select([np.isnan(chi1_np), chi1_np < 1 - critical_tol, chi1_np > 1 + critical_tol],
                    [UNDEFINED, ORDERED, CHAOTIC], CRITICAL).astype(np.int8)
  dims = ("sigma_w2", "sigma_b2")
  name = act.name
  ds = xr.Dataset(
      {
          "q_star": (dims, q, {"long_name": "q*", "description": "stable fixed point of the q-map"}),
          "c_star": (dims, c_star, {"long_name": "c*", "description": "stable fixed point of the c-map at q*"}),
          "chi_1": (dims, chi1_np, {"long_name": "chi_1", "description": "sigma_w2 E[phi'(sqrt(q*) z)^2]"}),
          "chi_c": (dims, chi_c, {"long_name": "chi_c", "description": "slope of the c-map at c*"}),
          "xi_q": (dims, np.asarray(xi_q), {"long_name": "xi_q", "units": "layers"}),
          "xi_c": (dims, np.asarray(depth_scale(chi_c)), {"long_name": "xi_c", "units": "layers"}),
          "converged": (dims, np.asarray(fp_q.converged) & c_conv),
          "phase": (dims, phase, {
              "flag_values": np.array([UNDEFINED, ORDERED, CRITICAL, CHAOTIC], np.int8),
              "flag_meanings": "undefined ordered critical chaotic",
              "critical_tol": critical_tol,
              "description": "ordered: chi_1 < 1 - critical_tol; critical: |chi_1 - 1| <= "
                             "critical_tol; chaotic: chi_1 > 1 + critical_tol"}),
          "critical_sigma_w2": (("sigma_b2",), np.asarray(_critical_sigma_w2(act, b_axis)),
                                {"description": "sigma_w2 with chi_1(q*) = 1 at this sigma_b2 (nan where no "
                                                "network reaches the critical line)"}),
      },
      coords={"sigma_w2": w_axis, "sigma_b2": b_axis},
      attrs={"activation": name,
             "reference": "Poole et al. 2016; Schoenholz et al. 2017"},
  )
  return ds if isinstance(arch, MLP) else arch.phase_diagram(ds)
