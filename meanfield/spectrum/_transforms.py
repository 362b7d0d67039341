"""Transforms of free probability for the Jacobian spectrum, on the law of ``x``.

:func:`stieltjes` gives ``m(w) = E[x/(w - x)]`` (``M_{D^2}(w)``) of a
piecewise-uniform law in closed form, and :func:`log_z` the subordination
``log z(w)`` with ``M_{JJ^T}(z(w)) = m(w)`` (Pennington, Schoenholz &
Ganguli 2017, eqs. 7-12). Elementary functions are written out
(:func:`_atan`, :func:`_arg`, :func:`_atanh`) for accuracy near the
segments' ends and for speed on CPU. A private module of
:mod:`meanfield.spectrum`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from meanfield.spectrum._law import Law

Array = jax.Array


def _atan(t: Array) -> Array:
  """``arctan`` of a real array by two half-angle reductions and a Taylor series.

  ``atan(a) = 2 atan(a/(1 + sqrt(1 + a^2)))`` twice takes ``|a| <= 1`` to
  ``|a| <= tan(pi/16) ~ 0.2``, where 12 Taylor terms give full double
  precision; ``|t| > 1`` uses ``pi/2 - atan(1/t)``. Several times faster
  than ``jnp.arctan`` on CPU, which dominates the cost of the solver.
  """
  a = jnp.abs(t)
  inverted = a > 1.0
  a = jnp.where(inverted, 1.0 / a, a)
  for _ in range(2):
    a = a / (1.0 + jnp.sqrt(1.0 + a * a))
  a2 = a * a
  acc = jnp.zeros_like(a)
  for k in range(11, -1, -1):
    acc = acc * a2 + (-1.0) ** k / (2 * k + 1)
  res = 4.0 * a * acc
  return jnp.sign(t) * jnp.where(inverted, np.pi / 2 - res, res)


def _arg(x: Array, y: Array) -> Array:
  """The angle of ``x + i y`` in ``(-pi, pi]`` (``atan2(y, x)``), via ``tan(angle/2)``."""
  r = jnp.sqrt(x * x + y * y)
  return 2.0 * _atan(jnp.where(x >= 0, y / (r + x), (r - x) / y))


def _atanh_parts(a, b, pr, pi, qr, qi):
  """Principal ``atanh(y)``, ``y = a + i b`` (``y != +-1``), as ``(re, im)``, accurate near 0 and ``+-1``.

  ``Re = log1p(4a / ((1 - a)^2 + b^2)) / 4`` (``|a| < 1/2``), else
  ``log(|1 + y|^2 / |1 - y|^2) / 4``; ``Im = arg((1 + y) conj(1 - y)) / 2``.
  ``1 + y = pr + i pi`` and ``1 - y = qr + i qi`` are passed in, computed
  without cancellation by the caller (next to an end of a segment ``1 +- y``
  is small and ``1 + (+-y)`` would lose its digits).
  """
  q2 = qr * qr + qi * qi
  re = 0.25 * jnp.where(jnp.abs(a) < 0.5, jnp.log1p(4.0 * a / q2),
                        jnp.log((pr * pr + pi * pi) / q2))
  im = 0.5 * _arg(pr * qr + pi * qi, 2.0 * b)
  return re, im


def stieltjes(w: Array, law: Law) -> tuple[Array, Array, Array]:
  """``m(w) = E[x/(w - x)]``, ``dm/dw`` and ``g(w) = E[1/(w - x)]`` (``Im w >= 0``).

  Per segment with centre ``c``, half-width ``h``: ``d = w - c``,
  ``y = h/d``, ``E[1/(w - x)] = atanh(y)/(y d) = A/d``; then
  ``E[x/(w - x)] = c A/d + (A - 1)`` (no cancellation at large ``|w|``) and
  ``d/dw = -c/(d^2 (1 - y^2)) - (1/(1 - y^2) - A)/d``; a point mass
  (``h = 0``) has ``A = 1``. The principal ``atanh(y) = (log(1 + y) -
  log(1 - y))/2`` is the right branch for ``Im w > 0`` and for real ``w`` off
  the segment (``1 +- y = (d +- h)/d`` with ``d +- h`` and ``d`` in the same
  half-plane). ``1 + m = w g`` is accurate where ``m -> -1`` (``w -> 0``, small
  ``lambda``), where ``1 + m`` itself would cancel.
  """
  # In real arithmetic (complex division is several times slower on CPU): with
  # n1 = d + h, n2 = d - h: 1 + y = n1/d, 1 - y = n2/d, A = atanh(y) d/h, and
  # dm = -w/(n1 n2) + A/d (the two terms of d/dw above, with c + d = w).
  wr, wi = jnp.real(w), jnp.imag(w)
  h = law.half
  dr = wr - law.mid
  di = jnp.broadcast_to(wi, dr.shape)
  d2 = dr * dr + di * di
  ir, ii = dr / d2, -di / d2                                   # 1/d
  yr, yi = h * ir, h * ii                                      # y = h/d
  n1r, n2r = dr + h, dr - h
  pr, pi = _mul(n1r, di, ir, ii)                               # 1 + y
  qr, qi = _mul(n2r, di, ir, ii)                               # 1 - y
  at_r, at_i = _atanh_parts(yr, yi, pr, pi, qr, qi)
  point = h == 0
  safe_h = jnp.where(point, 1.0, h)
  ar, ai = _mul(at_r, at_i, dr / safe_h, di / safe_h)          # A = atanh(y) d/h
  ar, ai = jnp.where(point, 1.0, ar), jnp.where(point, 0.0, ai)
  gr, gi = _mul(ar, ai, ir, ii)                                # A/d
  nr, ni = _mul(n1r, di, n2r, di)                              # n1 n2
  nn = nr * nr + ni * ni
  tr, ti = _mul(wr, wi, nr / nn, -ni / nn)                     # w/(n1 n2)
  mass = law.mass
  m = jax.lax.complex(jnp.sum(mass * (law.mid * gr + ar - 1.0), axis=-1),
                      jnp.sum(mass * (law.mid * gi + ai), axis=-1))
  dm = jax.lax.complex(jnp.sum(mass * (gr - tr), axis=-1), jnp.sum(mass * (gi - ti), axis=-1))
  g = jax.lax.complex(jnp.sum(mass * gr, axis=-1), jnp.sum(mass * gi, axis=-1))
  return m, dm, g


def _mul(ar, ai, br, bi):
  """``(a r + i a i)(b r + i b i)`` as a pair of real arrays."""
  return ar * br - ai * bi, ar * bi + ai * br


def log_z(w: Array, law: Law, depth, log_sigma_w2, orthogonal: float):
  """``log z(w)`` and its derivative, with ``M_{JJ^T}(z(w)) = m(w)`` (subordination).

  Put ``m = M_{D^2}(w)``, so ``S_{D^2}(m) = (1 + m)/(m w)``; then
  ``M_{JJ^T}^{-1}(m) = (1 + m)/m * S_{D^2}(m)^-L S_{W^T W}(m)^-L``:

  ``z = (1 + m)/m * t^L`` with ``t = sigma_w2 m w/(1 + m)`` (orthogonal) or
  ``t = sigma_w2 m w`` (Gaussian), i.e.
  ``log z = (1 - L o) log(1 + m) + (L - 1) log m + L log w + L log sigma_w2``
  with ``o = 1`` (orthogonal), ``0`` (Gaussian). Logarithms keep deep
  networks in range; they are principal, so ``log z`` is known mod ``2 pi i``.
  """
  m, dm, g = stieltjes(w[..., None], law)
  one_plus_m = w * g   # = 1 + m without cancellation as m -> -1
  return _subordination(w, m, dm, one_plus_m, depth, log_sigma_w2, orthogonal) + (m,)


def _subordination(w, m, dm, one_plus_m, depth, log_sigma_w2, orthogonal):
  """``(log z, d log z / dw)`` from ``m(w)``, ``dm/dw`` and ``1 + m`` (real or complex)."""
  c1 = 1.0 - depth * orthogonal
  f = (c1 * jnp.log(one_plus_m) + (depth - 1.0) * jnp.log(m) + depth * jnp.log(w)
       + depth * log_sigma_w2)
  df = c1 * dm / one_plus_m + (depth - 1.0) * dm / m + depth / w
  return f, df


def log_z_real(w: Array, law: Law, depth, log_sigma_w2, orthogonal: float):
  """:func:`log_z` and its derivative for real ``w`` right of the support of ``x`` (real arithmetic).

  There ``m(w) = E[x/(w - x)] >= 0`` and ``z(w)`` are real: per segment
  ``d = w - c > h``, ``A = atanh(h/d) d/h = log1p(2h/(d - h)) d/(2h)``
  (1 for a point mass), ``E[1/(w - x)] = A/d``, and ``m`` and ``dm/dw`` as
  in :func:`stieltjes`. About three times cheaper than the complex path;
  used to locate the upper edge of the spectrum.
  """
  h = law.half
  d = w[..., None] - law.mid
  n1, n2 = d + h, d - h
  point = h == 0
  safe_h = jnp.where(point, 1.0, h)
  a = jnp.where(point, 1.0, jnp.log1p(2.0 * h / jnp.where(point, 1.0, n2)) * d / (2.0 * safe_h))
  g = a / d
  mass = law.mass
  m = jnp.sum(mass * (law.mid * g + a - 1.0), axis=-1)
  dm = jnp.sum(mass * (g - w[..., None] / (n1 * n2)), axis=-1)
  one_plus_m = w * jnp.sum(mass * g, axis=-1)
  return _subordination(w, m, dm, one_plus_m, depth, log_sigma_w2, orthogonal)
