"""Gaussian integrals of one activation, shared by the theory modules.

The building blocks of the q- and c-maps, their slopes and their fixed
points: ``E[phi(u)^2]`` and ``E[phi'(u)^2]`` for ``u = sqrt(q) z``, and the
moments of a correlated pair ``(u1, u2)`` of equal variance ``q``. Closed
forms where the activation has them, else quadrature
(:mod:`meanfield.gaussian`). Every function here is traceable and takes an
:class:`~meanfield.Activation` (static) and arrays of one shape; the public
modules validate and broadcast before calling them. A private module: its
names are meant for the other modules of the package, not for users.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _mehler
from meanfield.activations import Activation
from meanfield.gaussian import (DEFAULT_BIVARIATE_DEGREE, DEFAULT_DEGREE, bivariate_expectation,
                                gaussian_expectation)

Array = jax.Array

#: Gauss-Legendre nodes per panel of the 2-D integrals of the correlation map.
BIVARIATE_DEGREE = DEFAULT_BIVARIATE_DEGREE


def float_dtype(*xs: Any):
  """The floating dtype of the arguments (float32 unless 64-bit is on and one is float64)."""
  return jnp.result_type(*[x for x in xs if x is not None], float)


def as_arrays(*xs: Any) -> tuple[Array, ...]:
  """The arguments as arrays of their common floating dtype, broadcast to one shape."""
  dtype = float_dtype(*xs)
  return tuple(jnp.broadcast_arrays(*(jnp.asarray(x, dtype) for x in xs)))


def second_moments(act: Activation, q: Array) -> tuple[Array, Array]:
  """``(E[phi(u)^2], E[phi'(u)^2])`` for ``u = sqrt(q) z``: closed forms or one quadrature.

  Shape and dtype of ``q``. At ``q = 0`` the small-``q`` expansion
  (:func:`small_q_series`) gives the value and the right derivatives in
  ``q`` (the rule's ``sqrt(q)`` has none there). Where ``q`` is infinite
  only closed forms give a value (ReLU: ``E[phi'^2] = 1/2``); quadrature
  gives nan.
  """
  positive = q > 0
  safe = jnp.where(positive, q, 1)
  forms = act.closed_forms
  if "second_moment" in forms and "derivative_second_moment" in forms:
    m2, dm2 = forms["second_moment"](safe), forms["derivative_second_moment"](safe)
  else:
    m2, dm2 = gaussian_expectation(lambda h: (act.fn(h) ** 2, act.derivative(h) ** 2), safe,
                                   kinks=act.kinks, degree=DEFAULT_DEGREE)
  return (jnp.where(positive, m2, small_q_series(act, "square", q)),
          jnp.where(positive, dm2, small_q_series(act, "slope_square", q)))


def _derivative(f):
  """``f'`` of a scalar function, by forward-mode autodiff (cheap to nest, unlike ``grad``)."""
  return lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


#: The integrands of :func:`small_q_series`: ``phi^2`` and ``phi'^2``.
_SERIES_INTEGRANDS = {
    "square": lambda act: (lambda h: act.fn(h) ** 2),
    "slope_square": lambda act: (lambda h: _derivative(act.fn)(h) ** 2),
}


@functools.lru_cache(maxsize=None)
def _series_coefficients(act: Activation, integrand: str, dtype_name: str
                         ) -> tuple[float, float, float, float, float]:
  """``(c0, a, c1, b, c2)`` of :func:`small_q_series`, computed once per activation and dtype.

  They are numbers (derivatives of ``g`` at ``0`` or ``+-t``), so they are
  evaluated once, outside any trace (``jax.ensure_compile_time_eval``), and
  enter every program as constants: the nested derivatives cost a program
  of thousands of operations to trace and compile, and every theory function
  that integrates ``phi`` would otherwise carry one.
  """
  dtype = np.dtype(dtype_name)
  g = _SERIES_INTEGRANDS[integrand](act)
  kinked = 0.0 in act.kinks
  tiny = float(np.finfo(dtype).tiny ** 0.25) if kinked else 0.0

  def values(t):
    d = [g]
    for _ in range(4):
      d.append(_derivative(d[-1]))
    at = jnp.stack([jnp.stack([f(t), f(-t)]) for f in d])     # (5, 2): g^(k)(+-t)
    return at, g(jnp.zeros((), dtype))

  with jax.ensure_compile_time_eval():
    at, g_zero = jax.jit(values)(jnp.asarray(tiny, dtype))
    at, g_zero = np.asarray(at, np.float64), float(g_zero)
  (g0p, g0m), (g1p, g1m), (g2p, g2m), (g3p, g3m), (g4p, g4m) = at

  def jump(p, m):       # a jump, not the O(t) drift of a smooth derivative across [-t, t]
    big = abs(p - m) > np.sqrt(tiny) * (1 + abs(p) + abs(m))
    return float(p - m) if kinked and big else 0.0

  c0 = (g0p + g0m) / 2
  # g continuous at 0: its value there exactly (not g(+-t), off by O(t)), unless autodiff's
  # value at the kink itself disagrees with both sides (jnp.minimum's tie rule halves the
  # slope of ELU's expm1(min(x, 0)) at 0): then the one-sided limit is the value
  if kinked and jump(g0p, g0m) == 0 and jump(g_zero, c0) == 0:
    c0 = g_zero
  return (float(c0), jump(g1p, g1m) / np.sqrt(2 * np.pi), float((g2p + g2m) / 4),
          jump(g3p, g3m) / (3 * np.sqrt(2 * np.pi)), float((g4p + g4m) / 16))


def small_q_series(act: Activation, integrand: str, q: Array) -> Array:
  """``E[g(sqrt(q) z)]`` from its expansion at ``q -> 0+``: exact value and slopes at ``q = 0``.

  ``g`` is ``phi^2`` (``integrand="square"``) or ``phi'^2`` (``"slope_square"``).
  ``E[g(sqrt(q) z)] = sum_n g^(n)(0) q^(n/2) E[z^n] / n!``; for smooth ``g``
  that is ``g(0) + q g2 / 2 + q^2 g4 / 8 + ...`` (``gk`` the k-th derivative
  at 0). With a kink at 0 the two half-lines carry half the Gaussian mass
  each: the even derivatives are the means of their one-sided values, and a
  jump ``J1`` of ``g'`` (``J3`` of its third derivative) at 0 adds
  ``J1 q^(1/2) / sqrt(2 pi)`` (``J3 q^(3/2) / (3 sqrt(2 pi))``), whose
  slope in ``q`` is infinite at 0. The derivatives come from autodiff
  (one-sided: at ``+-t``, ``t`` a tiny number), once per activation and
  dtype (:func:`_series_coefficients`). Live in ``q`` (shape and dtype of
  ``q``); meant for ``q`` at 0.
  """
  dtype = q.dtype
  c0, a, c1, b, c2 = (jnp.asarray(v, dtype)
                      for v in _series_coefficients(act, integrand, np.dtype(dtype).name))
  root = lambda coef, power: coef * jnp.where(coef != 0, q, 1) ** power   # safe where
  return c0 + root(a, 0.5) + c1 * q + root(b, 1.5) + c2 * q * q


def length_map(act: Activation, sigma_w2: Array, sigma_b2: Array, q: Array) -> Array:
  """``sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2``."""
  return sigma_w2 * second_moments(act, q)[0] + sigma_b2


def moment_slopes(act: Activation, q: Array) -> tuple[Array, Array, Array, Array]:
  """``E[phi^2]``, ``E[phi'^2]`` and their derivatives in ``q``, for ``q > 0``.

  ``d/dq E[f(sqrt(q) z)] = E[u f'(u)] / (2 q)`` (differentiating under the
  integral), so the slopes are ``E[u phi phi'] / q`` and ``E[u phi' phi''] / q``:
  one quadrature of four integrands, with no derivative through the rule (whose
  nodes move with ``q``, and whose derivative would cost several times its
  compile time). Exact where ``phi`` (for the first) and ``phi'^2`` (for the
  second) are continuous, so for kinks at ``u = 0`` only; closed forms are
  differentiated instead, and other kinks fall back to differentiating the rule.
  """
  forms = act.closed_forms
  if "second_moment" in forms and "derivative_second_moment" in forms:
    ones = jnp.ones_like(q)
    m2, dm2_dq = jax.jvp(forms["second_moment"], (q,), (ones,))
    d2, dd2_dq = jax.jvp(forms["derivative_second_moment"], (q,), (ones,))
    return m2, d2, dm2_dq, dd2_dq
  if set(act.kinks) <= {0.0}:
    def g(h):
      phi, d1, d2 = act.fn(h), act.derivative(h), act.second_derivative(h)
      return phi * phi, d1 * d1, h * phi * d1, h * d1 * d2

    m2, d2, a, b = gaussian_expectation(g, q, kinks=act.kinks, degree=DEFAULT_DEGREE)
    return m2, d2, a / q, b / q
  ones = jnp.ones_like(q)
  (m2, d2), (dm2_dq, dd2_dq) = jax.jvp(lambda x: second_moments(act, x), (q,), (ones,))
  return m2, d2, dm2_dq, dd2_dq


def length_map_with_slope(act: Activation, sigma_w2: Array, sigma_b2: Array, q: Array
                          ) -> tuple[Array, Array]:
  """``(q_map(q), d q_map / d q)`` in one pass (``q > 0``), from :func:`moment_slopes`."""
  m2, _, dm2_dq, _ = moment_slopes(act, q)
  return sigma_w2 * m2 + sigma_b2, sigma_w2 * dm2_dq


def length_map_slope(act: Activation, sigma_w2: Array, q: Array) -> Array:
  """``d q_map / d q`` at ``q``, counting the delta functions of ``phi''`` at kinks.

  For ``q > 0`` from :func:`moment_slopes`; at ``q = 0`` its limit from
  above, ``sigma_w2 (phi'(0)^2 + phi(0) phi''(0))`` (for a kink at 0 the
  means of the one-sided values; infinite where ``phi(0) != 0`` and ``phi'``
  jumps there), with the right slope in ``q`` too (:func:`small_q_series`);
  nan where ``q`` is infinite or nan.
  """
  positive = jnp.isfinite(q) & (q > 0)
  safe = jnp.where(positive, q, 1)
  slope = sigma_w2 * moment_slopes(act, safe)[2]
  zero = q == 0
  at_zero = jnp.where(zero, q, 0)
  series = jax.jvp(lambda x: small_q_series(act, "square", x), (at_zero,),
                   (jnp.ones_like(at_zero),))[1]
  return jnp.where(positive, slope, jnp.where(zero, sigma_w2 * series, jnp.nan))


def pair_moments(act: Activation, q: Array, c: Array, *, derivative: bool = False,
                 degree: int = BIVARIATE_DEGREE) -> tuple[Array, ...]:
  """For equal variances ``q`` and correlation ``c``:

  ``(E[phi(u1) phi(u2)], E[(phi(u1) - phi(u2))^2])`` and, with
  ``derivative=True``, also ``E[phi'(u1) phi'(u2)]``; closed forms where the
  activation has them, else one 2-D quadrature on shared nodes.
  """
  forms = act.closed_forms
  keys = ("cross_moment", "squared_difference") + (
      ("derivative_cross_moment",) if derivative else ())
  if all(k in forms for k in keys):
    out = (forms["cross_moment"](q, q, q * c), forms["squared_difference"](q, c))
    if derivative:
      out += (forms["derivative_cross_moment"](q, q, q * c),)
    return out

  def g(u1, u2):
    p1, p2 = act.fn(u1), act.fn(u2)
    out = (p1 * p2, (p1 - p2) ** 2)
    if derivative:
      out += (act.derivative(u1) * act.derivative(u2),)
    return out

  return bivariate_expectation(g, q, q, q * c, kinks=act.kinks, degree=degree)


def next_correlation(sigma_w2: Array, sigma_b2: Array, q_out: Array, cross: Array,
                     squared_difference: Array) -> Array:
  """``c_out = (sigma_w2 E[phi phi] + sigma_b2) / q_out``, from ``1 - c_out`` where ``c_out > 1/2``."""
  c_direct = (sigma_w2 * cross + sigma_b2) / q_out
  c_near_one = 1 - sigma_w2 * squared_difference / (2 * q_out)
  return jnp.where(c_direct > 0.5, c_near_one, c_direct)


def limit_length(act: Activation, sigma_w2: Array, sigma_b2: Array, q: Array) -> Array:
  """``q``, or a tiny positive length where the c-map at ``q`` is 0/0 and means its limit ``q -> 0+``.

  That is where ``q = 0`` and ``q_map(0) = sigma_w2 phi(0)^2 + sigma_b2 = 0``
  with ``sigma_w2 > 0`` (ReLU or tanh with ``sigma_b2 = 0``): the c-map and its
  slopes there are taken at ``tiny ** 0.25`` of the dtype, where ReLU's
  (scale-free) are exact and a smooth ``phi`` with ``phi(0) = 0`` is linear
  to rounding.
  """
  tiny = jnp.asarray(np.finfo(np.dtype(q.dtype)).tiny ** 0.25, q.dtype)
  limit = (q == 0) & (sigma_w2 > 0) & (sigma_w2 * act.fn(jnp.zeros((), q.dtype)) ** 2
                                       + sigma_b2 == 0)
  return jnp.where(limit, tiny, q)


def correlation_map(act: Activation, sigma_w2: Array, sigma_b2: Array, q: Array, c: Array
                    ) -> tuple[Array, Array]:
  """``(q_map(q), c_map(c))`` at length ``q`` (arrays of one shape).

  ``c_out = (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / q_map(q)``. For
  activations the Mehler series serves (:func:`meanfield._mehler.usable`)
  the integrals come from the series, a matrix product instead of a 2-D
  quadrature; where its error bound does not certify the result to
  ``_mehler.TOLERANCE`` machine epsilons (of ``1 - c_out`` where ``c_out > 1/2``,
  else absolute), the whole call falls back to 2-D quadrature.

  Where ``q = 0`` and ``q_map(0) = sigma_w2 phi(0)^2 + sigma_b2 = 0`` (ReLU or
  tanh with ``sigma_b2 = 0``) ``c_out`` is 0/0: it is the limit ``q -> 0+``,
  taken at a tiny positive length (:func:`limit_length`; ReLU is scale-free: its
  c-map is the same at every ``q > 0``; a smooth ``phi`` with ``phi(0) = 0``
  becomes linear).
  """
  q = limit_length(act, sigma_w2, sigma_b2, q)

  def quadrature(_):
    q_out = length_map(act, sigma_w2, sigma_b2, q)
    cross, sqdiff = pair_moments(act, q, c)
    return q_out, next_correlation(sigma_w2, sigma_b2, q_out, cross, sqdiff)

  if not _mehler.usable(act):
    return quadrature(None)
  valid = jnp.isfinite(q) & (q > 0)
  safe_q = jnp.where(valid, q, 1)
  m2, dm2 = second_moments(act, safe_q)
  q_out = sigma_w2 * m2 + sigma_b2
  b = _mehler.coefficients(act, safe_q)
  t0, t1 = _mehler.tail_bounds(b, safe_q, m2, dm2)
  cross, sqdiff, cross_error, sqdiff_error = _mehler.pair_moments(b, c, m2, t0, t1)
  series = next_correlation(sigma_w2, sigma_b2, q_out, cross, sqdiff)
  tol = _mehler.TOLERANCE * float(jnp.finfo(q.dtype).eps)
  near = (sigma_w2 * cross + sigma_b2) / q_out > 0.5
  error = sigma_w2 * jnp.where(near, sqdiff_error / 2, cross_error) / q_out
  scale = jnp.where(near, 1 - series, 1.0)
  certified = jnp.all(valid & (error <= tol * scale))
  return jax.lax.cond(certified, lambda _: (q_out, series), quadrature, None)
