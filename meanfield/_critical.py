"""The critical line solved for its length at a given bias variance, and the stability rule.

A private module: :func:`meanfield.critical_sigma_w2`, :func:`meanfield.phase_diagram`
and :func:`meanfield.critical_init` share :func:`critical_point` and
:func:`reached_length`, so the three agree on which points of the line a network reaches.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _solve
from meanfield._fixed_points import q_root
from meanfield._integrals import as_arrays, moment_slopes, second_moments
from meanfield.activations import Activation

Array = jax.Array
ArrayLike = Any


def line_bias(act: Activation, q: Array) -> Array:
  """``sigma_b2`` along the critical line at length ``q``: ``q - E[phi^2] / E[phi'^2]``."""
  m2, dm2 = second_moments(act, q)
  return q - m2 / dm2


def line_bias_with_slope(act: Activation, q: Array) -> tuple[Array, Array]:
  """:func:`line_bias` and its derivative in ``q`` (``q > 0``), from :func:`moment_slopes`."""
  m2, d2, dm2_dq, dd2_dq = moment_slopes(act, q)
  return q - m2 / d2, 1 - (dm2_dq * d2 - m2 * dd2_dq) / (d2 * d2)


@functools.partial(jax.jit, static_argnames=("act",))
def reached_length(act: Activation, q_line: Array, q_solved: Array, sigma_w2: Array,
                   sigma_b2: Array) -> tuple[Array, Array]:
  """``(q*, reached)`` at a point of the critical line: the stability rule of the whole package.

  At ``(sigma_w2, sigma_b2)`` the length map has the fixed point ``q_line``
  (the critical line's length there, ``chi_1(q_line) = 1``); ``q_solved`` is
  :func:`meanfield.q_star`'s answer, the first length where ``F(q) =
  q_map(q) - q`` turns negative. A network reaches ``q_line`` (``reached``)
  where ``q_solved`` is finite and either agrees with ``q_line`` (to
  ``sqrt(eps)`` relative; ``q* = q_solved``) or lies above it with ``F``
  zero to ``sqrt(eps) q`` at every ladder length in between: those lengths are
  fixed to rounding, and from below the length stops at the first, so
  ``q* = q_line``. Elsewhere ``reached`` is False: a stable fixed point lies
  below ``q_line`` (GELU at small ``sigma_b2``: ``q_line`` is unstable), or the
  length grows past ``q_line`` (to ``q_solved``, or without bound).

  Used by :func:`critical_sigma_w2`, :func:`phase_diagram` and
  :func:`meanfield.critical_init`; arrays of one shape, traceable.
  """
  dtype = q_solved.dtype
  tol = np.sqrt(np.finfo(dtype).eps)
  ladder = jnp.asarray(_solve.ladder(dtype), dtype)
  m2 = second_moments(act, ladder)[0]
  ladder, m2 = (a.reshape((1,) * q_solved.ndim + a.shape) for a in (ladder, m2))
  values = sigma_w2[..., None] * m2 + sigma_b2[..., None] - ladder       # F on the ladder
  between = (ladder > q_line[..., None] * (1 + tol)) & (ladder < q_solved[..., None])
  flat = jnp.all(~between | (values <= tol * ladder), axis=-1)
  close = jnp.abs(q_solved - q_line) <= tol * q_line
  above = q_solved > q_line * (1 + tol)
  reached = jnp.isfinite(q_solved) & (close | (above & flat))
  return jnp.where(close, q_solved, q_line), reached


@functools.partial(jax.jit, static_argnames=("act",))
def critical_point(act: Activation, sigma_b2: ArrayLike) -> tuple[Array, Array, Array]:
  """``(sigma_w2, q, reached)``: the smallest length ``q`` on the critical line with bias
  ``sigma_b2``, its weight variance (nan where the line does not reach ``sigma_b2``) and
  whether a network reaches it (:func:`reached_length`)."""
  (sigma_b2,) = as_arrays(sigma_b2)
  dtype = sigma_b2.dtype
  target = jax.lax.stop_gradient(sigma_b2)

  def f_and_df(q):                            # positive below the target, negative above
    value, slope = line_bias_with_slope(act, jnp.where(q > 0, q, jnp.finfo(q.dtype).tiny))
    return target - value, -slope

  ladder = jnp.asarray(np.concatenate([[0.0], _solve.LADDER]), dtype)
  bias_ladder = line_bias(act, ladder)                    # shared by every point
  values = target[..., None] - bias_ladder.reshape((1,) * target.ndim + ladder.shape)
  found, lo, f_lo, hi, f_hi = _solve.first_sign_change(values, ladder, strict=False)
  at_zero = values[..., 0] <= 0
  active = found & ~at_zero
  x0 = jnp.where(active, lo + f_lo * (hi - lo) / jnp.where(active, f_lo - f_hi, 1), 0)
  q, _, _ = _solve.safeguarded_newton(f_and_df, lo, jnp.where(active, hi, 1), f_lo, f_hi, x0,
                                      active & (f_hi < 0), _solve.rtol(dtype))
  q = jnp.where(at_zero, 0, q)
  # implicit gradient in sigma_b2: one Newton step on the stopped solution.
  slope = line_bias_with_slope(act, jnp.where(q > 0, q, 1))[1]
  q = _solve.implicit_step(lambda x: line_bias(act, x) - sigma_b2, q, q > 0, slope)
  sigma_w2 = 1 / second_moments(act, q)[1]
  sigma_w2 = jnp.where(found & ~jnp.isnan(sigma_b2), sigma_w2, jnp.nan)
  stop = jax.lax.stop_gradient
  w, b = stop(jnp.where(jnp.isnan(sigma_w2), 1, sigma_w2)), stop(sigma_b2)
  solved = q_root(act, w, b).value
  _, reached = reached_length(act, stop(q), stop(solved), w, b)
  return sigma_w2, q, reached & ~jnp.isnan(sigma_w2)
