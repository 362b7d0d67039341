"""The solvers behind :func:`meanfield.fixed_point`: ``q*``, ``c*`` and ``chi_c`` of the plain MLP.

A private module: :mod:`meanfield.fixed_points` and the other theory modules
call its solvers (:func:`q_root`, :func:`c_root`), which skip the argument
checks of the public functions.

``q*`` is the stable fixed point reached by iterating the q-map from small
lengths: the smallest ``q >= 0`` where ``F(q) = q_map(q) - q`` turns negative.
It is bracketed on a fixed ladder of half-decades ``q = 1e-12 .. 1e16``, then
every 4 decades up to the float maximum (the length map is tabulated once on
the ladder, shared by every point; tanh has ``q* ~ sigma_w2 + sigma_b2`` at
any finite ``sigma_w2``) and
refined by safeguarded Newton (Newton steps that leave the bracket are
replaced by regula falsi or bisection), so it converges near criticality
where plain iteration crawls. Special values (Poole et al. 2016; Schoenholz
et al. 2017):

- ``q* = inf`` where the q-map has no fixed point (``F > 0`` up to the float
  maximum): ReLU with ``sigma_w2 > 2``, or ``sigma_w2 = 2`` and
  ``sigma_b2 > 0``; also where ``q*`` itself would overflow;
- ``q* = 0`` where zero is stable (ReLU with ``sigma_b2 = 0``, ``sigma_w2 < 2``;
  tanh with ``sigma_b2 = 0``, ``sigma_w2 < 1``); its gradient is the one-sided
  ``dq*/dsigma_b2 = 1 / (1 - q_map_slope(0))``, ``dq*/dsigma_w2 = phi(0)^2 / (1 - q_map_slope(0))``;
- ``q* = 0`` also where the q-map is the identity and every ``q`` is fixed
  (ReLU at the He point ``(2, 0)``, linear at ``(1, 0)``): the length reached
  from small lengths, and the limit from the ordered side. There ``c* = 1``,
  ``chi_c = chi_1 = 1`` and ``xi_q = xi_c = inf``;
- nan for nan input.

``c*`` is found on the fixed length ``q*`` (or a given length ``q``). Where
``chi_1 <= 1`` (ordered and critical) ``c* = 1``. Where ``chi_1 > 1`` the map
has ``C(0) >= 0``, is convex on ``[0, 1]`` (its Mehler series has
non-negative coefficients) and crosses the diagonal once below 1, so ``c*``
is the root in ``[0, 1)`` of

.. math::

  K(\\delta) = \\frac{\\sigma_w^2 E[(\\phi(u_1) - \\phi(u_2))^2]}{2 q_{out} \\delta} - 1,
  \\qquad \\delta = 1 - c,

which equals ``chi_1 q / q_out - 1`` at ``delta -> 0`` and stays well
conditioned as ``c* -> 1`` near criticality (no cancellation, a simple root).
For smooth activations without closed forms it is solved on the Mehler
series of the c-map (:mod:`meanfield._mehler`: 1-D integrals and a
polynomial root, with an error bound per point); where the bound is not met,
and for activations with closed forms or kinks away from 0, by safeguarded
Newton on 2-D quadrature, polished by one Newton step with the full rule.
Where ``q*`` is infinite ``c*`` and ``chi_c`` are nan; where ``q* = 0``
(ordered) ``c* = 1`` as a limit.

Solvers return a :class:`Root` (value, ``converged`` flag, iteration
count); gradients use the implicit function theorem (one Newton step on the
stopped solution), so ``jax.grad`` works through them. Each public function
compiles once per activation and argument shape/dtype (a jitted core with
the activation static); later calls with new values are served from JAX's
cache, and the functions work inside a user's ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks, _mehler, _solve
from meanfield._integrals import (as_arrays, length_map, length_map_slope, length_map_with_slope,
                                  next_correlation, pair_moments, second_moments)
from meanfield.activations import Activation, activation as _activation
from meanfield.gaussian import gaussian_expectation
from meanfield.network import accepts_network

__all__ = ["Root", "q_star", "q_root", "c_root", "chi_1_at", "xi_q", "depth_scale"]

Array = jax.Array
ArrayLike = Any

# c* on 2-D quadrature is searched with this many Gauss-Legendre nodes per panel (~1e-10)
# and polished by one Newton step with the full rule (error squared, ~1e-12).
_SEARCH_DEGREE = 8
_SOLVE_BATCH = 32


class Root(NamedTuple):
  """One solver's root with its report (a pytree; fields share one shape).

  Attributes:
    value: the fixed point (``inf``/nan where documented).
    converged: bool, whether the solver met its tolerance (or proved
      divergence); where False, ``value`` is the last iterate, not to be trusted.
    iterations: int32, Newton/bisection steps taken.
  """

  value: Array
  converged: Array
  iterations: Array


def _batched(fn, *arrays):
  """``fn`` on flattened arrays in batches of ``_SOLVE_BATCH`` (a slow point holds back only its batch)."""
  shape = arrays[0].shape
  flat = tuple(a.reshape(-1) for a in arrays)
  if flat[0].shape[0] <= _SOLVE_BATCH:
    out = fn(*flat)
  else:
    out = jax.lax.map(lambda xs: fn(*xs), flat, batch_size=_SOLVE_BATCH)
  return jax.tree.map(lambda v: v.reshape(shape), out)


# --- q* -----------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("act",))
def q_root(act: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> Root:
  sigma_w2, sigma_b2 = as_arrays(sigma_w2, sigma_b2)
  dtype = sigma_w2.dtype
  stop = jax.lax.stop_gradient
  sw2, sb2 = stop(sigma_w2), stop(sigma_b2)
  ladder = jnp.asarray(_solve.ladder(dtype), dtype)
  m2_ladder = second_moments(act, ladder)[0]                  # shared by every point
  lead = (1,) * sw2.ndim
  ladder_, m2_ = ladder.reshape(lead + ladder.shape), m2_ladder.reshape(lead + ladder.shape)
  values = sw2[..., None] * m2_ + sb2[..., None] - ladder_
  found, lo, f_lo, hi, f_hi = _solve.first_sign_change(values, ladder)
  f_zero = values[..., 0]

  def f_and_df(q):
    value, slope = length_map_with_slope(act, sw2, sb2, q)
    return value - q, slope - 1

  active = found & ~jnp.isnan(f_zero)
  x0 = jnp.where(active, lo + (hi - lo) * (f_lo / jnp.where(active, f_lo - f_hi, 1)), 1)
  x, done, its = _solve.safeguarded_newton(f_and_df, lo, jnp.where(active, hi, 2), f_lo, f_hi,
                                           x0, active, _solve.rtol(dtype))
  # the q-map is the identity (ReLU at (2, 0), linear at (1, 0)): every q is fixed; q* = 0,
  # the one reached from small lengths and the limit from the ordered side.
  identity = ~found & jnp.all(values == 0, axis=-1)
  # F = 0 to rounding at every length up to the sign change, with F(0) = 0 (hard_tanh at
  # (1, 0); leaky ReLU on its critical line at sigma_b2 = 0): every small length is fixed
  # to rounding, and the length falls to q* = 0 (slower than any depth resolves), the same
  # rule as meanfield.critical_init's (meanfield._critical.reached_length).
  tol = np.sqrt(np.finfo(dtype).eps)
  flat = found & (f_zero == 0) & jnp.all((ladder_ > lo[..., None])
                                         | (jnp.abs(values) <= tol * ladder_), axis=-1)
  # no sign change up to the top of the ladder: the length diverges.
  value = jnp.where(found & ~flat, x, jnp.where(identity | flat, 0, jnp.inf))
  value = jnp.where(jnp.isnan(f_zero), jnp.nan, value)
  converged = jnp.where(found, done, ~jnp.isnan(f_zero))
  live = lambda q: length_map(act, sigma_w2, sigma_b2, q) - q
  use = jnp.isfinite(value) & (value > 0)
  slope = length_map_with_slope(act, sw2, sb2, jnp.where(use, value, 1))[1] - 1
  value = _solve.implicit_step(live, value, use, slope)
  # q* = 0 (stable: dF/dq < 0 just above 0) moves to q* ~ -F(0)/F'(0+) when the parameters
  # move (upwards only: q >= 0): dq*/dp = -(dF(0)/dp) / F'(0+), F' the one-sided slope.
  zeros = jnp.zeros_like(value)
  slope = stop(length_map_slope(act, sw2, zeros)) - 1
  at_zero = (value == 0) & (slope < 0) & ~identity
  f0 = length_map(act, sigma_w2, sigma_b2, zeros)
  correction = (f0 - stop(f0)) / jnp.where(at_zero, slope, -1)
  value = jnp.where(at_zero, value - correction, value)
  return Root(value, converged, its)


@accepts_network
def q_star(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any) -> Array:
  """The stable length fixed point ``q*`` (Poole et al. 2016), alone.

  Args:
    sigma_w2, sigma_b2: weight and bias variances (``>= 0``), broadcast.
    activation: a name, an Activation or a callable.

  Returns:
    ``q*``, broadcast shape and floating dtype of the arguments: ``inf`` where
    the length diverges, 0 where 0 is the stable fixed point, nan for nan
    (see :mod:`meanfield.fixed_points`). :func:`meanfield.fixed_point` gives
    it with ``c*``, the slopes, the depth scales and a convergence report.
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  return q_root(act, sigma_w2, sigma_b2).value


# --- c* and chi_c --------------------------------------------------------------


def _search_2d(act, sigma_w2, q, q_out, k_zero, chaotic):
  """``(delta, converged, iterations)`` of ``K(delta) = 0`` on 2-D quadrature (1-D arrays)."""
  dtype = q.dtype

  def k_and_dk(delta):
    _, sqdiff, dcross = pair_moments(act, q, 1 - delta, derivative=True, degree=_SEARCH_DEGREE)
    scale = sigma_w2 / (2 * q_out)
    k = scale * sqdiff / delta - 1
    dk = scale * (2 * q * dcross * delta - sqdiff) / (delta * delta)
    return k, dk

  ones = jnp.ones_like(q)
  k_one, _ = k_and_dk(ones)                # K(1) = -C(0) <= 0
  x0 = jnp.where(chaotic, k_zero / jnp.where(chaotic, k_zero - k_one, 1), 1)
  # K is known to the search rule's accuracy (~1e-10): closer to the root than that it is
  # noise; the polishing step then removes the remaining error.
  ftol = max(1e-9, 100 * float(jnp.finfo(dtype).eps))
  return _solve.safeguarded_newton(k_and_dk, jnp.zeros_like(q), ones, k_zero, k_one, x0,
                                   chaotic & (k_one < 0), _solve.rtol(dtype), ftol)


def _polish_2d(act, sigma_w2, sigma_b2, q, q_out, delta, chaotic):
  """One Newton step on ``C(c) - c`` with the full 2-D rule, then ``chi_c`` there.

  Points that are not chaotic are evaluated at ``c = 1/2`` (their results are
  replaced by the caller): at ``c = 1`` closed forms such as ReLU's have
  infinite derivatives in ``c``, whose nan would leak into the gradients.
  """
  c = jnp.where(chaotic, 1 - jax.lax.stop_gradient(delta), 0.5)
  cross, sqdiff, dcross = pair_moments(act, q, c, derivative=True)
  residual = next_correlation(sigma_w2, sigma_b2, q_out, cross, sqdiff) - c
  slope = jax.lax.stop_gradient(sigma_w2 * dcross * q / q_out) - 1
  newton = chaotic & (slope < 0)
  c = jnp.clip(jnp.where(newton, c - residual / jnp.where(newton, slope, -1), c), 0, 1)
  dcross = pair_moments(act, q, jnp.where(chaotic, c, 0.5), derivative=True)[2]
  return c, sigma_w2 * dcross * q / q_out


def _c_star_2d(act, sigma_w2, sigma_b2, q, q_out, k_zero, chaotic):
  stop = jax.lax.stop_gradient
  delta, done, its = _batched(functools.partial(_search_2d, act), stop(sigma_w2), stop(q),
                              stop(q_out), stop(k_zero), chaotic)
  delta = jnp.where(chaotic, delta, 0)
  c, chi_c = _polish_2d(act, sigma_w2, sigma_b2, q, q_out, delta, chaotic)
  return c, chi_c, done, its


def _c_star_series(act, sigma_w2, sigma_b2, q, q_out, k_zero, chaotic, m2, dm2, fallback=True):
  """The Mehler-series solve everywhere; points it cannot certify go to 2-D quadrature one by one.

  With ``fallback=False`` they are left as the series found them, marked by
  the fifth result (``need``), for the caller to solve apart.
  """
  stop = jax.lax.stop_gradient
  b = _mehler.coefficients(act, stop(q))
  c, _, certified, its = _mehler.solve(b, stop(sigma_w2), stop(sigma_b2), stop(q), stop(q_out),
                                       stop(m2), stop(dm2))
  c = jnp.where(chaotic, c, 1)

  def residual(c):      # C(c) - c on the series, live in the parameters, without cancellation
    b_live = _mehler.coefficients(act, q)
    m2_live = second_moments(act, q)[0]
    p_value = _mehler.polynomial(_mehler.difference_coefficients(b_live), c)[0]
    delta = 1 - c
    return delta - sigma_w2 * (delta * p_value + m2_live - jnp.sum(b_live, axis=-1)) / q_out

  c = _solve.implicit_step(residual, c, chaotic)
  chi_c = sigma_w2 * _mehler.polynomial(_mehler.coefficients(act, q), c)[1] / q_out

  need = chaotic & ~certified
  if not fallback:
    return c, chi_c, ~need, its, need
  args = (sigma_w2, sigma_b2, q, q_out, k_zero, need, c, chi_c, its)

  def one(a):
    sw2, sb2, qq, qo, kz, nd, c0, chi0, it0 = a

    def fallback(_):
      c1, chi1, ok, it1 = _c_star_2d(act, sw2, sb2, qq, qo, kz, nd)
      return c1, chi1, ok, it1

    return jax.lax.cond(nd, fallback, lambda _: (c0, chi0, jnp.asarray(True), it0), None)

  flat = jax.tree.map(lambda a: a.reshape(-1), args)
  out = jax.lax.cond(jnp.any(need), lambda f: jax.lax.map(one, f),
                     lambda f: (f[6], f[7], jnp.ones_like(f[5]), f[8]), flat)
  return jax.tree.map(lambda a: a.reshape(q.shape), out) + (jnp.zeros_like(need),)


@functools.partial(jax.jit, static_argnames=("act", "path"))
def _c_star(act: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q: ArrayLike | None,
            path: str = "auto") -> tuple[Root, Array, Array]:
  """``(c*, chi_c, need)`` on the length ``q`` (``None``: ``q*``).

  ``path``: ``"auto"`` (the series where it serves, 2-D quadrature inside the
  same program where it cannot certify a point), ``"series"`` (no 2-D
  fallback compiled: ``need`` marks the points left for it) or ``"2d"``.
  """
  if q is None:
    sigma_w2, sigma_b2 = as_arrays(sigma_w2, sigma_b2)
    q = q_root(act, sigma_w2, sigma_b2).value
  sigma_w2, sigma_b2, q = as_arrays(sigma_w2, sigma_b2, q)
  valid = jnp.isfinite(q) & (q >= 0)
  safe_q = jnp.where(valid, q, 1)
  m2, dm2 = second_moments(act, safe_q)
  q_out = sigma_w2 * m2 + sigma_b2
  valid &= jnp.isfinite(q_out)
  chi1 = sigma_w2 * dm2
  # safe values where q = 0 or q_out = 0, so no branch left out by a where has nan gradients
  positive = valid & (q > 0) & (q_out > 0)
  pos_q, pos_out = jnp.where(positive, q, 1), jnp.where(positive, q_out, 1)
  k_zero = chi1 * pos_q / pos_out - 1       # K(delta -> 0) = slope at c = 1, minus 1
  chaotic = positive & (k_zero > 0)
  need = jnp.zeros(chaotic.shape, bool)
  if _mehler.usable(act) and path != "2d":
    c, chi_c, done, its, need = _c_star_series(act, sigma_w2, sigma_b2, pos_q, pos_out, k_zero,
                                               chaotic, m2, dm2, fallback=path == "auto")
  else:
    c, chi_c, done, its = _c_star_2d(act, sigma_w2, sigma_b2, pos_q, pos_out, k_zero, chaotic)
  near = chaotic & (k_zero < _NEAR_CRITICAL)
  if not act.kinks:
    # evaluated everywhere, used where near: elsewhere at k = 0, so that no nan
    # derivative of an unused branch leaks into the gradients through the where
    c_near, chi_near = _near_critical(act, sigma_w2, pos_q, pos_out,
                                      jnp.where(near, k_zero, 0))
    c, chi_c = jnp.where(near, c_near, c), jnp.where(near, chi_near, chi_c)
    done = done | near
  else:
    # a kink makes the c-map non-analytic at c = 1; closer to criticality than the
    # solver resolves, report what it found as not converged
    done = done & ~(chaotic & (k_zero < _UNRESOLVED))
  chi_c = jnp.where(chaotic, chi_c, jnp.where(positive, chi1 * pos_q / pos_out, chi1))
  c = jnp.where(chaotic, c, 1)
  nan = jnp.full_like(c, jnp.nan)
  converged = jnp.where(chaotic, done, True)
  need = need & ~near
  return (Root(jnp.where(valid, c, nan), converged, its), jnp.where(valid, chi_c, nan),
          need)


def _c_star_lazily(act, sigma_w2, sigma_b2, q):
  """:func:`_c_star` for concrete arguments: the series program first, and the 2-D program
  (compiled only when first needed) on the points the series could not certify."""
  fp, chi, need = _c_star(act, sigma_w2, sigma_b2, q, path="series")
  need = np.asarray(need)
  if not need.any():
    return fp, chi
  shape = need.shape
  index = np.flatnonzero(need)
  # padded to a power of two (repeating a point), so few shapes are ever compiled
  size = 1 << int(index.size - 1).bit_length()
  take = np.concatenate([index, np.full(size - index.size, index[0])])
  pick = lambda a: np.broadcast_to(np.asarray(a), shape).reshape(-1)[take]
  q_all = q if q is not None else q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  sub, sub_chi, _ = _c_star(act, pick(sigma_w2), pick(sigma_b2), pick(q_all), path="2d")

  def merge(full, part):
    out = np.array(full)
    out.reshape(-1)[index] = np.asarray(part)[: index.size]
    return jnp.asarray(out)

  return Root(*(merge(f, p) for f, p in zip(fp, sub))), merge(chi, sub_chi)


# Closer to criticality than this (chi_1 q / q_out - 1), c* and chi_c of smooth activations
# come from the expansion of the c-map at c = 1; kinked ones are flagged below _UNRESOLVED.
_NEAR_CRITICAL = 1e-6
_UNRESOLVED = 1e-8


def _near_critical(act, sigma_w2, q, q_out, k_zero):
  """``(c*, chi_c)`` from the c-map's Taylor expansion at ``c = 1`` (smooth ``phi``).

  With ``delta = 1 - c`` and ``C_k = sigma_w2 q^k E[phi^(k)(u)^2] / q_out`` (the
  k-th derivative of the c-map at ``c = 1``), ``C(1 - delta) = 1 - C_1 delta +
  C_2 delta^2 / 2 - C_3 delta^3 / 6 + ...``, so the fixed point solves
  ``(C_1 - 1) - C_2 delta / 2 + C_3 delta^2 / 6 = 0`` (small root, taken without
  cancellation) and ``chi_c = C_1 - C_2 delta + C_3 delta^2 / 2``. ``C_1 - 1`` is
  ``k_zero``, known to the accuracy of one 1-D integral, so ``delta`` keeps its
  relative accuracy as ``chi_1 -> 1`` where a solver's residual is noise. The
  terms left out are ``O(delta^3)``: below ``1e-10`` relative for
  ``k_zero < 1e-6``.
  """
  d3 = jnp.vectorize(jax.grad(act.second_derivative))
  e2, e3 = gaussian_expectation(lambda h: (act.second_derivative(h) ** 2, d3(h) ** 2), q,
                                kinks=act.kinks)
  c2 = sigma_w2 * q * q * e2 / q_out
  c3 = sigma_w2 * q * q * q * e3 / q_out
  disc = c2 * c2 / 4 - 2 * c3 * k_zero / 3
  root = jnp.where(disc > 0, jnp.sqrt(jnp.where(disc > 0, disc, 1)), 0)   # no inf slope at 0
  denominator = c2 / 2 + root
  delta = jnp.where(denominator != 0, 2 * k_zero / jnp.where(denominator != 0, denominator, 1),
                    jnp.where(k_zero == 0, 0, jnp.nan))
  return 1 - delta, 1 + k_zero - c2 * delta + c3 * delta * delta / 2


def c_root(act: Activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q: ArrayLike | None
           ) -> tuple[Root, Array]:
  """``(Root of c*, chi_c)`` on the length ``q`` (``None``: ``q*``), arguments already checked.

  Concrete arguments of an activation with a Mehler series take the series
  program first, and the 2-D quadrature (compiled only when first needed) on
  the points it cannot certify; traced ones one program with both. With a
  given ``q`` the map is ``c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) /
  q_map(q)`` at length ``q``. Broadcast shape and floating dtype of the
  arguments.
  """
  concrete = all(x is None or _checks.concrete(x) is not None for x in (sigma_w2, sigma_b2, q))
  if concrete and _mehler.usable(act):
    return _c_star_lazily(act, sigma_w2, sigma_b2, q)
  fp, chi, _ = _c_star(act, sigma_w2, sigma_b2, q)
  return fp, chi


@functools.partial(jax.jit, static_argnames=("act",))
def chi_1_at(act: Activation, q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> Array:
  """``chi_1 = sigma_w2 E[phi'(u)^2]`` at the length ``q`` (the program of :func:`meanfield.chi_1`)."""
  q, sigma_w2, sigma_b2 = as_arrays(q, sigma_w2, sigma_b2)
  return sigma_w2 * second_moments(act, q)[1]


@jax.jit
def depth_scale(slope: ArrayLike) -> Array:
  """``-1 / log(slope)`` for a map's slope at a stable fixed point: inf where ``slope >= 1``, nan for nan.

  One small program (called eagerly, its dozen elementwise operations were as many dispatches).
  """
  slope = jnp.asarray(slope)
  safe = jnp.where((slope > 0) & (slope < 1), slope, 0.5)
  scale = -1 / jnp.log(safe)
  scale = jnp.where(slope >= 1, jnp.inf, jnp.where(slope <= 0, 0, scale))
  return jnp.where(jnp.isnan(slope), jnp.nan, scale).astype(safe.dtype)


@functools.partial(jax.jit, static_argnames=("act",))
def xi_q(act: Activation, sigma_w2: ArrayLike, q: ArrayLike) -> Array:
  """``xi_q = -1 / log q_map'(q)``, the length's depth scale at ``q = q*``."""
  sigma_w2, q = as_arrays(sigma_w2, q)
  return depth_scale(length_map_slope(act, sigma_w2, q))
