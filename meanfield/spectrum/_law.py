"""The law of ``x = phi'(sqrt(q) z)^2``, ``z ~ N(0, 1)``: piecewise uniform between quantile nodes.

The ingredient of the Jacobian spectrum that depends on the activation
(Pennington, Schoenholz & Ganguli 2017): :func:`x_law` represents it as a
mixture of uniform laws (point masses where ``x`` is constant), whose
Stieltjes transform stays smooth up to the real axis;
:func:`x_moments` gives its first two moments by quadrature. A private
module of :mod:`meanfield.spectrum`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from meanfield.activations import Activation
from meanfield.gaussian import gauss_legendre, gaussian_expectation

Array = jax.Array

_Z_MAX = 9.0          # |z| beyond which the Gaussian mass (1e-19) is dropped
_NUDGE = 1e-3         # interval ends are evaluated this fraction of a segment inside
_N_TAIL = 8          # segments the tail's equal-mass segment is cut into
_N_GAUSS = 16         # Gauss-Legendre nodes per segment for its moments of x


def _small(dtype) -> float:
  """A length so small that ``phi'(+-sqrt(q) z)`` are ``phi'``'s one-sided values at 0."""
  return float(np.finfo(np.dtype(dtype)).tiny ** 0.25)


def x_moments(act: Activation, q: Array) -> tuple[Array, Array]:
  """``mu_1 = E[phi'(sqrt(q) z)^2]`` and ``mu_2 = E[phi'(sqrt(q) z)^4]``.

  At ``q = 0`` the limit ``q -> 0+``: ``x = phi'(0)^2`` for smooth ``phi``;
  for a kink at 0 the one-sided values, each with mass 1/2 (ReLU:
  Bernoulli(1/2), as at every ``q > 0``), not ``phi'`` at the kink itself.
  """
  def g(h):
    x = act.derivative(h) ** 2
    return x, x * x

  positive = q > 0
  mu1, mu2 = gaussian_expectation(g, jnp.where(positive, q, 1), kinks=act.kinks)
  t = jnp.asarray(_small(q.dtype), q.dtype)
  x1, x2 = g(jnp.stack([t, -t]))
  return (jnp.where(positive, mu1, jnp.where(q == 0, jnp.mean(x1), jnp.nan)),
          jnp.where(positive, mu2, jnp.where(q == 0, jnp.mean(x2), jnp.nan)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Law:
  """Mixture of uniform laws on ``[mid - half, mid + half]`` with weights ``mass``.

  ``half == 0`` is a point mass; all arrays have shape ``(n_segments,)``.
  """

  mid: Array
  half: Array
  mass: Array


def _intervals(act: Activation) -> list[tuple[float, float, float]]:
  """Intervals ``(a, b, sign)`` in ``h`` with ``a < b <= 0``: ``h = sign * h'``.

  They cut the real line at the activation's kinks and at 0, and are mirrored
  onto the negative half-line so every quantile is taken in a lower tail
  (precise ``ndtr``/``ndtri``).
  """
  cuts = sorted({float(k) for k in act.kinks} | {0.0})
  neg = [-np.inf] + [k for k in cuts if k < 0] + [0.0]
  pos = [-np.inf] + sorted(-k for k in cuts if k > 0) + [0.0]
  return ([(a, b, 1.0) for a, b in zip(neg[:-1], neg[1:])]
          + [(a, b, -1.0) for a, b in zip(pos[:-1], pos[1:])])


def _fractions(n: int) -> np.ndarray:
  """Ends of ``n`` segments on ``[0, 1]`` (fractions of an interval's Gaussian mass).

  Equal masses ``1/m``, except that the first is cut geometrically into
  ``r`` pieces of masses ``1/(2m), 1/(4m), ..., 2^-(r-1)/m, 2^-(r-1)/m``
  (``m = n - r + 1``, ``r = min(_N_TAIL, n)``): that end is a Gaussian
  tail (``z -> -inf``) where the law of ``x`` within one equal-mass segment
  is too skewed for a uniform law with its mean and variance.
  """
  r = min(_N_TAIL, n)
  m = n - r + 1
  tail = np.r_[0.0, 2.0 ** -np.arange(r - 1, 0, -1, dtype=np.float64)] / m
  return np.r_[tail, np.arange(1, m + 1, dtype=np.float64) / m]


def x_law(act: Activation, q: Array, n_nodes: int) -> Law:
  """The law of ``x = phi'(sqrt(q) z)^2`` from equal-mass segments in ``z``.

  Each of the ``k`` intervals between kinks is cut into ``n_nodes // k``
  segments of Gaussian mass (quantiles of ``z``), equal but for the one at
  the Gaussian tail, cut finer (:func:`_fractions`). On a segment the law
  of ``x`` is taken uniform with the segment's own conditional mean and
  variance of ``x`` (``_N_GAUSS``-point Gauss-Legendre in ``z`` with the
  Gaussian weight), its half-width ``sqrt(3 Var)`` capped so that it stays
  within the values of ``x`` at the segment's ends. So ``mu_1 = E[x]`` is
  exact to quadrature accuracy, and so is ``mu_2 = E[x^2]`` unless a cap
  bites. Where ``x`` is constant on a segment (the atoms of ReLU, hard-tanh,
  linear) the segment is a point mass. Stieltjes transforms of this law stay
  smooth as their argument approaches the real axis, unlike a sum of point
  masses.

  At ``q = 0`` it is the limit ``q -> 0+``: point masses at ``phi'(0)^2``,
  or for a kink at 0 at the two one-sided values with mass 1/2 each.

  Matching the moments matters where ``x`` is nearly constant (``q`` small:
  ``x ~ 1 - 2 q z^2`` for tanh): uniform between the end values, the tail
  segment ``z < ndtri(1/n)`` (cut at ``|z| = 9``) put its mass far out in
  ``x`` and made ``Var[x]`` several times too large at ``q = 1e-3``, and with
  it the variance of the Jacobian spectrum.
  """
  dtype = q.dtype
  sqrt_q = jnp.sqrt(q)
  intervals = _intervals(act)
  n = max(n_nodes // len(intervals), 1)
  a, b, sign = (np.array(col, dtype=np.float64) for col in zip(*intervals))
  # Ends in z; 0 and -inf stay put (also for q = 0).
  za = jnp.where(a == -np.inf, -jnp.inf, jnp.asarray(a, dtype) / sqrt_q)
  zb = jnp.where(b == 0.0, 0.0, jnp.asarray(b, dtype) / sqrt_q)
  ua = jax.scipy.special.ndtr(za)[:, None]
  ub = jax.scipy.special.ndtr(zb)[:, None]
  frac = jnp.asarray(_fractions(n), dtype)[None, :]
  z = jnp.clip(jax.scipy.special.ndtri(ua + (ub - ua) * frac), -_Z_MAX, 0.0)
  signs = jnp.asarray(sign, dtype)[:, None]   # (intervals, 1)

  def x_of(zz, s):
    # at q = 0 the limit q -> 0+: the one-sided value of phi' on each side of 0 (zz <= 0)
    h = jnp.where(q > 0, sqrt_q * zz, -_small(dtype))
    return act.derivative(s * h) ** 2

  # Conditional moments of x on each segment [z0, z1] (z <= 0, so the
  # Gaussian weight is largest at z1; scaled by it to stay in range).
  z0, z1 = z[:, :-1, None], z[:, 1:, None]
  t, wt = (jnp.asarray(v, dtype)[None, None, :] for v in gauss_legendre(_N_GAUSS))
  zz = (z0 + z1) / 2 + (z1 - z0) / 2 * t
  weight = wt * jnp.exp(-(zz - z1) * (zz + z1) / 2)
  weight = weight / jnp.sum(weight, axis=-1, keepdims=True)
  xx = x_of(zz, signs[..., None])
  mean = jnp.sum(weight * xx, axis=-1)
  var = jnp.sum(weight * (xx - mean[..., None]) ** 2, axis=-1)
  # The ends of an interval are kinks: evaluate phi' just inside it.
  z = z.at[:, 0].add(_NUDGE * (z[:, 1] - z[:, 0]))
  z = z.at[:, -1].add(-_NUDGE * (z[:, -1] - z[:, -2]))
  x = x_of(z, signs)
  # Bounds of x on each segment (x need not be monotone there: GELU, SiLU).
  lo = jnp.minimum(jnp.minimum(x[:, 1:], x[:, :-1]), jnp.min(xx, axis=-1))
  hi = jnp.maximum(jnp.maximum(x[:, 1:], x[:, :-1]), jnp.max(xx, axis=-1))
  point = lo == hi
  mid = jnp.where(point, lo, jnp.clip(mean, lo, hi))
  half = jnp.where(point, 0.0, jnp.minimum(jnp.sqrt(3.0 * var),
                                           jnp.minimum(mid - lo, hi - mid)))
  mass = (ub - ua) * jnp.diff(frac, axis=-1)
  # Pad with empty segments to exactly n_nodes, so that every activation
  # shares one compiled solver.
  pad = max(n_nodes - mid.size, 0)
  return Law(*(jnp.pad(v.ravel(), (0, pad)) for v in (mid, half, mass)))


@functools.partial(jax.jit, static_argnames=("act", "n_nodes"))
def x_law_batch(q, *, act: Activation, n_nodes: int) -> Law:
  return jax.vmap(lambda qq: x_law(act, qq, n_nodes))(q)

