"""The correlation map as a power series in ``c`` (Mehler's formula), and its fixed point.

For ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``,

.. math::

  E[\\phi(u_1) \\phi(u_2)] = \\sum_{k \\ge 0} b_k c^k, \\qquad
  b_k = a_k^2, \\quad a_k = E[\\phi(\\sqrt{q} z)\\, He_k(z)] / \\sqrt{k!}

(Mehler's formula; the ``He_k`` are the probabilists' Hermite polynomials).
The coefficients are non-negative and sum to ``E[phi(u)^2]``, and
``sum_k k b_k = q E[phi'(u)^2]``. So the 2-D integral of the c-map becomes
``K + 1`` one-dimensional ones, computed together as one matrix product on a
fixed rule, and ``c*`` becomes the root of a polynomial with non-negative
coefficients. With ``delta = 1 - c`` the fixed-point equation
``sigma_w2 (E[phi^2] - E[phi(u1) phi(u2)]) = q_out delta`` reads

.. math::

  \\sigma_w^2 P(c) + \\sigma_w^2 E(c) = q_{out}, \\qquad
  P(c) = \\sum_{j=0}^{K-1} c^j \\sum_{k=j+1}^{K} b_k,

without cancellation as ``c -> 1``; ``P`` is increasing and convex on
``[0, 1]``, so Newton's method from ``c = 1`` descends monotonically onto
the root. The truncated tail ``E(c) = sum_{k > K} b_k (1 - c^k) / (1 - c)``
lies in ``[0, min(T_0 / delta, T_1)]`` with ``T_0 = E[phi^2] - sum_{k <= K} b_k``
and ``T_1 = q E[phi'^2] - sum_{k <= K} k b_k``, both known from the 1-D
integrals. From these bounds each point gets an error bound on ``c*`` and
``chi_c``; where it exceeds the tolerance (large ``q``, where ``phi(sqrt(q) z)``
bends sharply and the series converges slowly) the point is marked and the
caller falls back to 2-D quadrature.

Used for smooth activations without closed forms (a kink at 0 is allowed:
the rule's nodes lie on the half-line ``z > 0``, so the kink is a panel end).
A private module, for :mod:`meanfield.fixed_points`, the maps and :mod:`meanfield.tangent`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from meanfield.activations import Activation

Array = jax.Array

#: Relative accuracy, in machine epsilons, that a result from the series must be certified to.
TOLERANCE = 1e5
#: Terms of the series (even: K/2 even and K/2 odd coefficients beyond b_0).
N_TERMS = 512
_Z_MAX = 12.0          # the rule covers z in [0, 12]: P(|z| > 12) = 3.6e-33
_PANEL = 0.4           # panel width in z
_DEGREE = 20           # Gauss-Legendre nodes per panel
_MAX_ITERATIONS = 100


def usable(act: Activation) -> bool:
  """Whether the series serves this activation (smooth, or a kink at 0 only; no closed forms)."""
  forms = act.closed_forms
  closed = all(k in forms for k in ("cross_moment", "squared_difference",
                                    "derivative_cross_moment"))
  return not closed and set(act.kinks) <= {0.0}


@functools.lru_cache(maxsize=None)
def _rule(n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Half-line nodes ``z`` and the weighted Hermite matrices for even and odd ``k`` (float64)."""
  x, w = np.polynomial.legendre.leggauss(_DEGREE)
  edges = np.arange(0.0, _Z_MAX + _PANEL / 2, _PANEL)
  lo, hi = edges[:-1, None], edges[1:, None]
  z = (lo + (hi - lo) * (x + 1) / 2).ravel()
  weight = ((hi - lo) / 2 * w).ravel() * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
  h = np.empty((z.size, n_terms + 1))
  h[:, 0], h[:, 1] = 1.0, z
  for k in range(1, n_terms):
    h[:, k + 1] = (z * h[:, k] - np.sqrt(k) * h[:, k - 1]) / np.sqrt(k + 1)
  h *= weight[:, None]
  return z, h[:, 0::2], h[:, 1::2]


def coefficients(act: Activation, q: Array, n_terms: int = N_TERMS) -> Array:
  """``b_k = a_k^2``, ``k = 0..n_terms``, for ``u = sqrt(q) z``; shape ``q.shape + (n_terms + 1,)``."""
  a = amplitudes(act, q, n_terms)
  return a * a


def amplitudes(act: Activation, q: Array, n_terms: int = N_TERMS) -> Array:
  """``a_k = E[phi(sqrt(q) z) He_k(z)] / sqrt(k!)``, ``k = 0..n_terms``, signed; shape
  ``q.shape + (n_terms + 1,)``. Two lengths' series give ``E[phi(u) phi(v)] = sum_k
  a_k(q_u) a_k(q_v) c^k`` for any pair of correlation ``c`` (Mehler's formula)."""
  z, even, odd = (jnp.asarray(a, q.dtype) for a in _rule(n_terms))
  h = jnp.sqrt(q)[..., None] * z.reshape((1,) * q.ndim + z.shape)
  plus, minus = act.fn(h), act.fn(-h)
  a_even = (plus + minus) @ even
  a_odd = (plus - minus) @ odd
  a_odd = jnp.concatenate([a_odd, jnp.zeros_like(a_even[..., :1])], axis=-1)
  return jnp.stack([a_even, a_odd], axis=-1).reshape(q.shape + (-1,))[..., : n_terms + 1]


def _powers(c: Array, n: int) -> Array:
  """``c^j``, ``j = 0..n-1``, on a new last axis, as ``sign(c)^j exp(j log|c|)`` (``c`` in [-1, 1]).

  One vectorised step (a loop over the terms would cost a dispatch per term).
  """
  j = jnp.arange(n, dtype=c.dtype).reshape((1,) * c.ndim + (n,))
  nonzero = c != 0
  log_c = jnp.log(jnp.where(nonzero, jnp.abs(c), 1))[..., None]
  odd = (jnp.arange(n) % 2 == 1).reshape(j.shape)
  sign = jnp.where(odd & (c < 0)[..., None], -1.0, 1.0).astype(c.dtype)
  return jnp.where(nonzero[..., None], sign * jnp.exp(j * log_c), (j == 0).astype(c.dtype))


def polynomial(coef: Array, c: Array, powers: Array | None = None) -> tuple[Array, Array]:
  """``sum_j coef_j c^j`` and its derivative in ``c`` (``coef`` on the last axis, ``c`` in [-1, 1]).

  For ``c >= 0`` and non-negative coefficients the sums have no cancellation.
  ``powers`` (:func:`_powers` of ``c``, at least as many as ``coef``) may be passed in.
  """
  n = coef.shape[-1]
  if powers is None:
    powers = _powers(c, n)
  powers = powers[..., :n]
  j = jnp.arange(n, dtype=c.dtype).reshape((1,) * c.ndim + (n,))
  value = jnp.sum(coef * powers, axis=-1)
  slope = jnp.sum(coef[..., 1:] * j[..., 1:] * powers[..., :-1], axis=-1)
  return value, slope


def tail_bounds(b: Array, q: Array, m2: Array, dm2: Array) -> tuple[Array, Array]:
  """``(T_0, T_1)``: the mass of the terms beyond ``K`` at ``c = 1``, and of ``k b_k``.

  ``T_0 = E[phi^2] - sum_{k <= K} b_k`` and ``T_1 = q E[phi'^2] - sum_{k <= K} k b_k``,
  less the rounding of the sums they are read from (so they bound the
  truncation, not the arithmetic, which every method shares).
  """
  eps = float(jnp.finfo(q.dtype).eps)
  k = jnp.arange(b.shape[-1], dtype=q.dtype).reshape((1,) * q.ndim + b.shape[-1:])
  t0 = jnp.maximum(jnp.abs(m2 - jnp.sum(b, axis=-1)) - 8 * eps * m2, 0)
  t1 = jnp.maximum(jnp.abs(q * dm2 - jnp.sum(k * b, axis=-1)) - 8 * eps * q * dm2, 0)
  return t0, t1


def pair_moments(b: Array, c: Array, m2: Array, t0: Array, t1: Array
                 ) -> tuple[Array, Array, Array, Array]:
  """``E[phi(u1) phi(u2)]``, ``E[(phi(u1) - phi(u2))^2]`` from the series, with error bounds.

  Returns ``(cross, sqdiff, cross_error, sqdiff_error)``. For ``c > 0`` the
  squared difference is ``2 (delta P(c) + tail)`` (no cancellation as
  ``c -> 1``), the tail ``sum_{k > K} b_k (1 - c^k)`` taken at the middle of its
  range ``[0, min(T_0, delta T_1)]``; elsewhere ``2 (E[phi^2] - cross)``.
  The truncated ``cross`` is off by at most ``|c|^(K+1) T_0``.
  """
  delta = 1 - c
  powers = _powers(c, b.shape[-1])
  cross = polynomial(b, c, powers)[0]
  cross_error = jnp.abs(c) ** b.shape[-1] * t0
  half_tail = jnp.minimum(t0, delta * t1) / 2
  near = 2 * (delta * polynomial(difference_coefficients(b), c, powers)[0] + half_tail)
  positive = c > 0
  sqdiff = jnp.where(positive, near, 2 * (m2 - cross))
  sqdiff_error = jnp.where(positive, 2 * half_tail, 2 * cross_error)
  return cross, sqdiff, cross_error, sqdiff_error


def difference_coefficients(b: Array) -> Array:
  """The coefficients of ``P(c) = (S(1) - S(c)) / (1 - c) = sum_j c^j sum_{k > j} b_k``."""
  return jnp.cumsum(b[..., ::-1], axis=-1)[..., ::-1][..., 1:]


def solve(b: Array, sigma_w2: Array, sigma_b2: Array, q: Array, q_out: Array, m2: Array,
          dm2: Array) -> tuple[Array, Array, Array, Array]:
  """``c*`` and ``chi_c`` in the chaotic phase from the series, with a certificate.

  Args:
    b: the coefficients, shape ``S + (K + 1,)``.
    sigma_w2, sigma_b2, q, q_out: the variances, the length and the next
      layer's length ``sigma_w2 E[phi^2] + sigma_b2``; shape ``S``.
    m2, dm2: ``E[phi(u)^2]`` and ``E[phi'(u)^2]`` (exact 1-D integrals).

  Returns:
    ``(c, chi_c, certified, iterations)``: ``certified`` where the bounds on
    the truncated tail keep ``c*`` within ``1e5 eps`` (relative, or absolute
    near 0) and ``chi_c`` within ``1e5 eps chi_c |log chi_c|``, so that
    ``xi_c`` is good to the same relative accuracy.
  """
  dtype = q.dtype
  eps = float(jnp.finfo(dtype).eps)
  k = jnp.arange(b.shape[-1], dtype=dtype).reshape((1,) * q.ndim + b.shape[-1:])
  p_coef = difference_coefficients(b)
  t0, t1 = tail_bounds(b, q, m2, dm2)
  target = q_out / sigma_w2
  # P(c) = target is solved as c Q(c) = target - P(0) with Q = (P - P(0)) / c, and
  # target - P(0) = b_0 + T_0 + sigma_b2 / sigma_w2 written without cancellation
  # (P(0) = sum_{k >= 1} b_k): an odd activation without bias has c* = 0 exactly.
  q_coef = p_coef[..., 1:]
  rhs = b[..., 0] + t0 + sigma_b2 / sigma_w2

  # Newton from c = 1 on the increasing convex P descends monotonically onto the root: stop
  # when a step is at rounding level or no longer descends.
  def cond(state):
    _, step, it = state
    return (it < _MAX_ITERATIONS) & jnp.any(step > 4 * eps * c_floor(state[0]))

  def c_floor(c):
    return jnp.maximum(c, 1e-30)

  def body(state):
    c, step, it = state
    value, slope = polynomial(q_coef, c)
    value, slope = c * value - rhs, value + c * slope           # c Q(c) - rhs and its slope
    newton = jnp.where(slope > 0, value / jnp.where(slope > 0, slope, 1), 0)
    moving = step > 4 * eps * c_floor(c)
    c_new = jnp.where(moving, jnp.clip(c - newton, 0, 1), c)
    return c_new, jnp.where(moving, c - c_new, 0), it + 1

  c, _, its = jax.lax.while_loop(cond, body, (jnp.ones_like(q), jnp.ones_like(q), 0))
  value, slope = polynomial(q_coef, c)
  value, slope = c * value - rhs, value + c * slope
  s_coef = k[..., 1:] * b[..., 1:]                                 # S'(c) = sum_k k b_k c^(k-1)
  s1, s2 = polynomial(s_coef, c)
  chi_c = sigma_w2 * s1 / q_out
  delta = 1 - c
  tail = jnp.minimum(t0 / jnp.where(delta > 0, delta, 1), t1)
  tail = jnp.where(delta > 0, tail, t1)
  dc = tail / jnp.where(slope > 0, slope, np.inf)
  tol = TOLERANCE * eps
  dchi = sigma_w2 * (t1 * c ** (b.shape[-1] - 1) + s2 * dc) / q_out
  ok_c = dc <= tol * c + 1e3 * eps
  ok_chi = dchi <= tol * chi_c * jnp.abs(jnp.log(chi_c))
  ok_root = (slope > 0) & (jnp.abs(value) <= 64 * eps * target)
  return c, chi_c, ok_c & ok_chi & ok_root, jnp.full(q.shape, its, jnp.int32)
