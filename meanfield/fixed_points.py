"""Fixed points of the length and correlation maps: ``q*``, ``c*`` and ``chi_c``.

``q*`` is the stable fixed point reached by iterating the q-map from small
lengths: the smallest ``q >= 0`` where ``F(q) = q_map(q) - q`` turns negative.
It is bracketed on a fixed ladder of half-decades ``q = 1e-12 .. 1e16`` and
refined by safeguarded Newton (Newton steps that leave the bracket are
replaced by bisection), so it converges near criticality where plain
iteration crawls. Special values (Poole et al. 2016; Schoenholz et al. 2017):

- ``q* = inf`` where the q-map has no fixed point (``F > 0`` up to 1e16):
  ReLU with ``sigma_w2 > 2``, or ``sigma_w2 = 2`` and ``sigma_b2 > 0``;
- ``q* = 0`` where zero is stable (ReLU with ``sigma_b2 = 0``, ``sigma_w2 < 2``);
- nan for nan input.

``c*`` is found on the fixed length ``q*``. Where ``chi_1 <= 1`` (ordered and
critical) ``c* = 1``. Where ``chi_1 > 1`` the map has ``C(0) >= 0``, is
convex on ``[0, 1]`` (its Mehler series has non-negative coefficients) and
crosses the diagonal once below 1, so ``c*`` is the root in ``[0, 1)`` of

.. math::

  K(\\delta) = \\frac{\\sigma_w^2 E[(\\phi(u_1) - \\phi(u_2))^2]}{2 q^* \\delta} - 1,
  \\qquad \\delta = 1 - c,

which equals ``chi_1 - 1`` at ``delta -> 0`` and stays well conditioned as
``c* -> 1`` near criticality (no cancellation, a simple root). It is solved by
safeguarded Newton on ``delta in (0, 1]``. Where ``q*`` is infinite ``c*``
and ``chi_c`` are nan; where ``q* = 0`` (ordered) ``c* = 1`` as a limit.

Solvers return a :class:`FixedPoint` (value, ``converged`` flag, iteration
count); gradients use the implicit function theorem (one Newton step on the
stopped solution), so ``jax.grad`` works through them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks
from meanfield.activations import Activation, activation as _activation
from meanfield.maps import _arrays, next_correlation, pair_moments, second_moments

__all__ = ["FixedPoint", "q_star", "q_star_solve", "c_star", "c_star_solve", "chi_c"]

Array = jax.Array
ArrayLike = Any

_LADDER = 10.0 ** np.arange(-12.0, 16.25, 0.5)
_MAX_ITERATIONS = 60
# c* is searched with this many Gauss-Legendre nodes per panel (~1e-10) and
# polished by one Newton step with the full rule (error squared, ~1e-12).
_SEARCH_DEGREE = 8
_SOLVE_BATCH = 32


class FixedPoint(NamedTuple):
  """A fixed point with its solver's report (a pytree; fields share one shape).

  Attributes:
    value: the fixed point (``inf``/nan where documented).
    converged: bool, whether the solver met its tolerance (or proved
      divergence); where False, ``value`` is the last iterate, not to be trusted.
    iterations: int32, Newton/bisection steps taken.
  """

  value: Array
  converged: Array
  iterations: Array


def _rtol(dtype) -> float:
  return 16 * float(jnp.finfo(dtype).eps)


def _safeguarded_newton(f_and_df, lo, hi, f_lo, f_hi, x0, active, rtol, ftol=0.0):
  """Root of a function positive at ``lo`` and negative at ``hi``, elementwise.

  ``f_and_df(x) -> (f, f')``; converged when a step or the bracket is below
  ``rtol`` relative, or ``|f| <= ftol`` (the noise level of ``f``). A Newton step that leaves ``(lo, hi)`` is
  replaced by the regula-falsi point of the bracket, or by bisection when
  that stalls at an end. Elements with ``active = False`` are left alone.
  Returns ``(x, converged, iterations)``.
  """

  def cond(state):
    *_, it, done = state
    return (it < _MAX_ITERATIONS) & ~jnp.all(done)

  def body(state):
    lo, hi, f_lo, f_hi, x, f, df, its, it, done = state
    newton = x - f / df
    ok = (df < 0) & (newton > lo) & (newton < hi)
    falsi = lo + f_lo * (hi - lo) / (f_lo - f_hi)
    width = hi - lo
    falsi_ok = (falsi > lo + width / 16) & (falsi < hi - width / 16)
    x_new = jnp.where(ok, newton, jnp.where(falsi_ok, falsi, (lo + hi) / 2))
    f_new, df_new = f_and_df(x_new)
    up = f_new >= 0
    lo_new, f_lo_new = jnp.where(up, x_new, lo), jnp.where(up, f_new, f_lo)
    hi_new, f_hi_new = jnp.where(up, hi, x_new), jnp.where(up, f_hi, f_new)
    finished = ((jnp.abs(x_new - x) <= rtol * jnp.abs(x_new)) | (jnp.abs(f_new) <= ftol)
                | (hi_new - lo_new <= rtol * hi_new))
    keep = lambda old, new: jnp.where(done, old, new)
    return (keep(lo, lo_new), keep(hi, hi_new), keep(f_lo, f_lo_new), keep(f_hi, f_hi_new),
            keep(x, x_new), keep(f, f_new), keep(df, df_new), keep(its, its + 1), it + 1,
            done | finished)

  f0, df0 = f_and_df(x0)
  done = ~active | (f0 == 0)
  state = (lo, hi, f_lo, f_hi, x0, f0, df0, jnp.zeros(x0.shape, jnp.int32), 0, done)
  state = jax.lax.while_loop(cond, body, state)
  x, its, done = state[4], state[7], state[9]
  return x, done, its


def _batched(fn, *arrays):
  """``fn`` on flattened arrays in batches of ``_SOLVE_BATCH`` (a slow point holds back only its batch)."""
  shape = arrays[0].shape
  flat = tuple(a.reshape(-1) for a in arrays)
  if flat[0].shape[0] <= _SOLVE_BATCH:
    out = fn(*flat)
  else:
    out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=_SOLVE_BATCH)
  return jax.tree.map(lambda v: v.reshape(shape), out)


def _throw_if_not_converged(fp: FixedPoint, what: str) -> None:
  def check(converged):
    if not np.all(converged):
      raise RuntimeError(f"{what}: the solver did not converge at "
                         f"{int(np.size(converged) - np.sum(converged))} of "
                         f"{np.size(converged)} points")
  jax.debug.callback(check, fp.converged)


# --- q* -----------------------------------------------------------------------


def _q_residual(act, sigma_w2, sigma_b2):
  def f(q):
    return sigma_w2 * second_moments(act, q)[0] + sigma_b2 - q

  def f_and_df(q):
    return jax.jvp(f, (q,), (jnp.ones_like(q),))
  return f, f_and_df


def _q_star_solve(act: Activation, sigma_w2: Array, sigma_b2: Array) -> FixedPoint:
  dtype = sigma_w2.dtype
  f, f_and_df = _q_residual(act, jax.lax.stop_gradient(sigma_w2),
                            jax.lax.stop_gradient(sigma_b2))
  zero = jnp.zeros_like(sigma_w2)
  f_zero = f(zero)

  # Scan the ladder for the first q with F(q) < 0; (lo, hi) brackets the root.
  def scan(carry, q_k):
    found, lo, f_lo, hi, f_hi = carry
    q_k = jnp.full_like(zero, q_k)
    f_k = f(q_k)
    hit = ~found & (f_k < 0)
    lo = jnp.where(found | hit, lo, q_k)
    f_lo = jnp.where(found | hit, f_lo, f_k)
    hi = jnp.where(hit, q_k, hi)
    f_hi = jnp.where(hit, f_k, f_hi)
    return (found | hit, lo, f_lo, hi, f_hi), None

  init = (jnp.zeros(zero.shape, bool), zero, f_zero, zero, f_zero)
  (found, lo, f_lo, hi, f_hi), _ = jax.lax.scan(scan, init, jnp.asarray(_LADDER, dtype))
  active = found & ~jnp.isnan(f_zero)
  x0 = jnp.where(active, lo + f_lo * (hi - lo) / jnp.where(active, f_lo - f_hi, 1), 1)
  x, done, its = _safeguarded_newton(f_and_df, lo, jnp.where(active, hi, 2), f_lo, f_hi,
                                     x0, active, _rtol(dtype))
  # no sign change up to the top of the ladder: the length diverges.
  value = jnp.where(found, x, jnp.inf)
  value = jnp.where(jnp.isnan(f_zero), jnp.nan, value)
  converged = jnp.where(found, done, ~jnp.isnan(f_zero))
  # implicit-function gradient: one Newton step on the stopped solution.
  value = jax.lax.stop_gradient(value)
  finite = jnp.isfinite(value)
  safe = jnp.where(finite, value, 1)
  f_live, _ = _q_residual(act, sigma_w2, sigma_b2)
  _, slope = f_and_df(safe)
  step = f_live(safe) / jax.lax.stop_gradient(jnp.where(slope != 0, slope, -1))
  value = jnp.where(finite & (slope < 0), value - step, value)
  return FixedPoint(value, converged, its)


def q_star_solve(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                 throw: bool = False) -> FixedPoint:
  """The stable fixed point ``q* = q_map(q*)`` with a convergence report.

  Args:
    sigma_w2, sigma_b2: weight and bias variances (``>= 0``), broadcast.
    activation: a name, an Activation or a callable.
    throw: raise ``RuntimeError`` (at run time, also under ``jit``) if any
      point did not converge.

  Returns:
    A :class:`FixedPoint` of the broadcast shape and floating dtype of the
    arguments; ``value`` is ``inf`` where the length diverges and 0 where 0
    is the stable fixed point (see the module docstring).
  """
  act = _activation(activation)
  _checks.check_hyperparameters(sigma_w2, sigma_b2)
  sigma_w2, sigma_b2 = _arrays(sigma_w2, sigma_b2)
  fp = _q_star_solve(act, sigma_w2, sigma_b2)
  if throw:
    _throw_if_not_converged(fp, "q_star")
  return fp


def q_star(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any) -> Array:
  """The stable length fixed point ``q*`` (Poole et al. 2016); see :func:`q_star_solve`."""
  return q_star_solve(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation).value


# --- c* and chi_c --------------------------------------------------------------


def _c_star_solve(act: Activation, sigma_w2: Array, sigma_b2: Array, q: Array
                  ) -> tuple[FixedPoint, Array]:
  """``(c*, chi_c)`` on the length ``q`` (normally ``q*``); arrays of one shape."""
  dtype = q.dtype
  m2, dm2 = second_moments(act, q)
  q_out = sigma_w2 * m2 + sigma_b2
  chi1 = sigma_w2 * dm2
  k_zero = chi1 * q / q_out - 1           # K(delta -> 0) = slope at c = 1, minus 1
  valid = jnp.isfinite(q) & (q >= 0) & jnp.isfinite(q_out)
  chaotic = valid & (q > 0) & (k_zero > 0)
  safe_q = jnp.where(valid, q, 1)
  safe_out = jnp.where(valid, q_out, 1)

  def search(sw2, q, q_out, k_zero, chaotic):
    def k_and_dk(delta):
      _, sqdiff, dcross = pair_moments(act, q, 1 - delta, derivative=True,
                                       degree=_SEARCH_DEGREE)
      scale = sw2 / (2 * q_out)
      k = scale * sqdiff / delta - 1
      dk = scale * (2 * q * dcross * delta - sqdiff) / (delta * delta)
      return k, dk

    ones = jnp.ones_like(q)
    k_one, _ = k_and_dk(ones)                # K(1) = -C(0) <= 0
    x0 = jnp.where(chaotic, k_zero / jnp.where(chaotic, k_zero - k_one, 1), 1)
    # K is known to the search rule's accuracy (~1e-10): closer to the root than that it is
    # noise; the polishing step below then removes the remaining error.
    ftol = max(1e-9, 100 * float(jnp.finfo(dtype).eps))
    return _safeguarded_newton(k_and_dk, jnp.zeros_like(q), ones, k_zero, k_one, x0,
                               chaotic & (k_one < 0), _rtol(dtype), ftol)

  stop = jax.lax.stop_gradient
  delta, done, its = _batched(search, stop(sigma_w2), stop(safe_q), stop(safe_out), stop(k_zero), chaotic)
  delta = jnp.where(chaotic, delta, 0)
  # polish with the full rule: one Newton step on C(c) - c, whose gradient is also the
  # implicit-function gradient; then chi_c at the polished c*.
  delta = jax.lax.stop_gradient(delta)
  c = 1 - delta
  cross, sqdiff, dcross = pair_moments(act, safe_q, c, derivative=True)
  residual = next_correlation(sigma_w2, sigma_b2, safe_out, cross, sqdiff) - c
  slope = jax.lax.stop_gradient(sigma_w2 * dcross * safe_q / safe_out) - 1
  newton = chaotic & (slope < 0)
  c = jnp.where(newton, c - residual / jnp.where(newton, slope, -1), c)
  dcross = pair_moments(act, safe_q, jnp.where(chaotic, c, 1), derivative=True)[2]
  chi_c = jnp.where(chaotic, sigma_w2 * dcross * safe_q / safe_out,
                    jnp.where(q > 0, chi1 * q / safe_out, chi1))
  nan = jnp.full_like(c, jnp.nan)
  c = jnp.where(valid, c, nan)
  chi_c = jnp.where(valid, chi_c, nan)
  converged = jnp.where(chaotic, done, True)
  return FixedPoint(c, converged, its), chi_c


def _c_star_and_chi_c(act, sigma_w2, sigma_b2):
  sigma_w2, sigma_b2 = _arrays(sigma_w2, sigma_b2)
  q = _q_star_solve(act, sigma_w2, sigma_b2).value
  return _c_star_solve(act, sigma_w2, sigma_b2, q)


def c_star_solve(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                 throw: bool = False) -> FixedPoint:
  """The stable correlation fixed point ``c*`` on the length ``q*``, with a convergence report.

  ``c* = 1`` where ``chi_1 <= 1`` (ordered, critical); ``c* < 1`` where
  ``chi_1 > 1`` (chaotic), Poole et al. 2016, Fig. 3. nan where ``q*`` is
  infinite. Arguments and result as :func:`q_star_solve`.
  """
  act = _activation(activation)
  _checks.check_hyperparameters(sigma_w2, sigma_b2)
  fp, _ = _c_star_and_chi_c(act, sigma_w2, sigma_b2)
  if throw:
    _throw_if_not_converged(fp, "c_star")
  return fp


def c_star(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any) -> Array:
  """The stable correlation fixed point ``c*``; see :func:`c_star_solve`."""
  return c_star_solve(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation).value


def chi_c(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any) -> Array:
  """``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at ``(q*, c*)``: the c-map's slope at ``c*``.

  Equals :func:`meanfield.chi_1` in the ordered phase (``c* = 1``); below 1
  in the chaotic phase; 1 at criticality (Schoenholz et al. 2017, Eq. 9).
  nan where ``q*`` is infinite. Broadcast shape and dtype of the arguments.
  """
  act = _activation(activation)
  _checks.check_hyperparameters(sigma_w2, sigma_b2)
  return _c_star_and_chi_c(act, sigma_w2, sigma_b2)[1]
