"""Tanh phase diagram (q*, c*, chi_1, xi_c) on a 256 x 256 grid in 64-bit, against a plain scipy quad loop.

What is timed:

- ``meanfield.phase_diagram`` over a 256 x 256 (sigma_w2, sigma_b2) grid,
  64-bit, warm (the first, compiling call is reported apart). It computes
  q*, c*, chi_1, chi_c, xi_q, xi_c and the phase for every grid point.
- The loop a user would otherwise write: for each point, fixed-point
  iteration of the q-map with ``scipy.integrate.quad`` (default tolerances)
  until successive values differ by < 1e-10 (at most 1000 steps), chi_1 by
  one more ``quad``, then fixed-point iteration of the c-map with
  ``scipy.integrate.dblquad`` from c = 0.5, and chi_c by ``dblquad``. It is
  far too slow for the whole grid, so it runs on a 4 x 4 subset of the grid
  points spread over both phases (16 points), and its time is extrapolated
  per point to 65,536 points. Its cost per point varies strongly (iteration
  is slow near the critical line), so the subset's mix matters; the subset
  is fixed (see ``SUBSET``).

Accuracy of both on the subset, against a reference computed here
independently: ``quad`` with ``epsabs = 1e-14, epsrel = 1e-13``, fixed points
by Brent's method to machine precision (q* as the root of ``q_map(q) - q``;
c* as the root of ``(1 - c) - sigma_w2 E[(phi(u1) - phi(u2))^2] / (2 q*)``,
which avoids the cancellation near c = 1), ``c* = 1`` where ``chi_1 <= 1``.
Reported as the largest relative error over the subset per quantity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np
from scipy import integrate, optimize

import meanfield
from benchmarks import _common

ACTIVATION = "tanh"
SIGMA_W2_RANGE = (0.25, 4.0)
SIGMA_B2_RANGE = (0.0, 0.3)
GRID = 256
#: Indices along each axis of the 256-grid where the scipy loop and the reference run (4 x 4 points).
SUBSET = (32, 96, 160, 224)
REPEATS = 2  # one warm call of the full grid takes minutes on a 2-core CPU
QUICK_GRID = 16
QUICK_SUBSET = ((12,), (8,))  # one chaotic point of the 16-grid
QUANTITIES = ("q_star", "c_star", "chi_1", "xi_c")

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INF = math.inf
REFERENCE_TOL = dict(epsabs=1e-14, epsrel=1e-13, limit=200)
QUICK_REFERENCE_TOL = dict(epsabs=1e-10, epsrel=1e-10, limit=200)


def _pdf(z: float) -> float:
  return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


def _sech2(x: float) -> float:
  """tanh'(x), without overflow in cosh."""
  return 1.0 / math.cosh(x) ** 2 if abs(x) < 350.0 else 0.0


# --- the plain loop a user would write ----------------------------------------------------------


def plain_point(sigma_w2: float, sigma_b2: float, *, tol: float = 1e-10,
                max_iter: int = 1000) -> tuple[tuple[float, float, float, float], bool]:
  """q*, c*, chi_1, xi_c at one point by fixed-point iteration with default-tolerance quad.

  Returns ``(values, converged)``; ``converged`` is False if an iteration hit ``max_iter``.
  """
  converged = True
  q = 1.0
  for i in range(max_iter):
    r = math.sqrt(q)
    q_new = sigma_w2 * integrate.quad(lambda z: math.tanh(r * z) ** 2 * _pdf(z), -_INF, _INF)[0]
    q_new += sigma_b2
    done, q = abs(q_new - q) < tol, q_new
    if done:
      break
  converged &= i < max_iter - 1
  r = math.sqrt(q)
  chi_1 = sigma_w2 * integrate.quad(lambda z: _sech2(r * z) ** 2 * _pdf(z), -_INF, _INF)[0]
  c = 0.5
  for i in range(max_iter):
    s = math.sqrt(max(1.0 - c * c, 0.0))
    cross = integrate.dblquad(
        lambda z2, z1: math.tanh(r * z1) * math.tanh(r * (c * z1 + s * z2)) * _pdf(z1) * _pdf(z2),
        -_INF, _INF, -_INF, _INF)[0]
    c_new = (sigma_w2 * cross + sigma_b2) / q
    done, c = abs(c_new - c) < tol, c_new
    if done:
      break
  converged &= i < max_iter - 1
  s = math.sqrt(max(1.0 - c * c, 0.0))
  chi_c = sigma_w2 * integrate.dblquad(
      lambda z2, z1: _sech2(r * z1) * _sech2(r * (c * z1 + s * z2)) * _pdf(z1) * _pdf(z2),
      -_INF, _INF, -_INF, _INF)[0]
  return (q, c, chi_1, -1.0 / math.log(chi_c)), converged


# --- the high-precision reference ----------------------------------------------------------------


def _e1(g: Callable[[float], float], q: float, tol: dict) -> float:
  r = math.sqrt(q)
  return integrate.quad(lambda z: g(r * z) * _pdf(z), -_INF, _INF, **tol)[0]


def _e2(g: Callable[[float, float], float], q: float, c: float, tol: dict) -> float:
  r, s = math.sqrt(q), math.sqrt(max(1.0 - c * c, 0.0))

  def inner(z1: float) -> float:
    return integrate.quad(lambda z2: g(r * z1, r * (c * z1 + s * z2)) * _pdf(z2), -_INF, _INF, **tol)[0]

  return integrate.quad(lambda z1: inner(z1) * _pdf(z1), -_INF, _INF, **tol)[0]


def reference_point(sigma_w2: float, sigma_b2: float, *, tol: dict = REFERENCE_TOL
                    ) -> tuple[float, float, float, float]:
  """q*, c*, chi_1, xi_c at one point (``sigma_b2 > 0``) with tight quad and Brent root finding."""
  brent = dict(xtol=1e-15, rtol=1e-15, maxiter=200)
  q_map = lambda q: sigma_w2 * _e1(lambda h: math.tanh(h) ** 2, q, tol) + sigma_b2  # noqa: E731
  # tanh's q-map is increasing and concave with q_map(0) = sigma_b2 > 0: one root in (0, sw + sb].
  q = optimize.brentq(lambda q: q_map(q) - q, 0.0, sigma_w2 + sigma_b2 + 1.0, **brent)
  chi_1 = sigma_w2 * _e1(lambda h: _sech2(h) ** 2, q, tol)
  if chi_1 <= 1.0:
    return q, 1.0, chi_1, -1.0 / math.log(chi_1)

  def gap(c: float) -> float:  # c_map(c) - c, free of cancellation near c = 1
    sqdiff = _e2(lambda a, b: (math.tanh(a) - math.tanh(b)) ** 2, q, c, tol)
    return (1.0 - c) - sigma_w2 * sqdiff / (2.0 * q)

  delta = 1e-2  # find 1 - delta between c* and 1, where the map lies below the identity
  while gap(1.0 - delta) >= 0.0 and delta > 1e-13:
    delta /= 10.0
  c = optimize.brentq(gap, -1.0, 1.0 - delta, **brent)
  chi_c = sigma_w2 * _e2(lambda a, b: _sech2(a) * _sech2(b), q, c, tol)
  return q, c, chi_1, -1.0 / math.log(chi_c)


# --- the benchmark ------------------------------------------------------------------------------


def run(*, quick: bool = False) -> _common.Report:
  n = QUICK_GRID if quick else GRID
  sub_w, sub_b = QUICK_SUBSET if quick else (SUBSET, SUBSET)
  sigma_w2 = np.linspace(*SIGMA_W2_RANGE, n)
  sigma_b2 = np.linspace(*SIGMA_B2_RANGE, n)
  points = [(i, j) for i in sub_w for j in sub_b]
  report = _common.Report(params={
      "activation": ACTIVATION, "grid": f"{n} x {n}", "sigma_w2": f"linspace{SIGMA_W2_RANGE + (n,)}",
      "sigma_b2": f"linspace{SIGMA_B2_RANGE + (n,)}", "dtype": "float64",
      "scipy subset": f"{len(points)} points: sigma_w2 index {list(sub_w)} x sigma_b2 index {list(sub_b)}",
  })

  last = []  # the latest result, kept so the timed call is also the one whose accuracy is checked
  grid = meanfield.Network(activation=ACTIVATION, sigma_w2=sigma_w2, sigma_b2=sigma_b2)

  def call():
    last[:] = [meanfield.phase_diagram(grid)]

  with jax.enable_x64(True):
    fast = report.time_call(call, name=f"meanfield.phase_diagram {n}x{n}, 64-bit, warm",
                            repeats=1 if quick else REPEATS,
                            note="first call (trace + compile) in the compile column")
  (ds,) = last

  plain_results: list = []

  def plain_loop() -> None:
    plain_results.clear()
    for i, j in points:
      plain_results.append(plain_point(float(sigma_w2[i]), float(sigma_b2[j]),
                                       max_iter=20 if quick else 1000))

  loop = report.time_call(plain_loop, name=f"scipy quad loop, {len(points)} points", repeats=1,
                          warmup=False, note="measured")
  slow = report.add_timing(loop.scaled(
      n * n / len(points), name=f"scipy quad loop, extrapolated to {n}x{n}",
      note=f"time per point over the {len(points)} subset points x {n * n} points"))
  report.compare(f"scipy quad loop / meanfield.phase_diagram ({n}x{n})", slow, fast,
                 note="the loop is extrapolated from the subset; one CPU thread for scipy, "
                      "all cores for XLA")

  reference = np.array([reference_point(float(sigma_w2[i]), float(sigma_b2[j]),
                                        tol=QUICK_REFERENCE_TOL if quick else REFERENCE_TOL)
                        for i, j in points])
  ours = np.array([[float(ds[k].values[i, j]) for k in QUANTITIES] for i, j in points])
  plain = np.array([values for values, _ in plain_results])
  report.metric("scipy loop points that hit max_iter", sum(not ok for _, ok in plain_results),
                note=f"of {len(points)}")
  for k, name in enumerate(QUANTITIES):
    for label, values in (("meanfield", ours), ("scipy loop", plain)):
      err = np.max(np.abs(values[:, k] - reference[:, k]) / np.abs(reference[:, k]))
      report.metric(f"{label}: max relative error of {name}", err,
                    note=f"over the {len(points)} subset points, against tight quad")
  return report
