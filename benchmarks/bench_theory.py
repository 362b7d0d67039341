"""Theory at interactive speed: warm and first calls of every theory function, phase diagrams, a peer.

What is timed, in 64-bit on the machine at hand, all in one run:

- Each public theory function with a scalar argument (tanh), warm: compiled
  once, then ``N_CALLS`` calls each with a new value (so a cache keyed on
  values would not help); the median per call. Beside them, one
  ``scipy.integrate.quad`` of ``E[tanh(sqrt(q) z)^2]`` with a new ``q`` per
  call, about what scipy needs for one step of a fixed-point iteration.
  Targets: the median over the functions at most 10 quads, the slowest at
  most 30.
- The first call of each function in a fresh process (import excluded):
  target 3 s or less.
- ``phase_diagram`` of tanh, 128 x 128 warm (target 3 s) and cold in a fresh
  process (25 s); 256 x 256 warm (10 s). Accuracy: c*, chi_c and xi_c at the
  16 check points of :mod:`benchmarks.bench_phase_diagram` (a 4 x 4 subset of
  the 256-grid over both phases) against its tight-quadrature reference:
  target 1e-9 relative.
- The peer: the phase-diagram recipe of neural-tangents' notebook, written
  here in NumPy from its description: q* by fixed-point iteration with
  Gauss-Hermite quadrature, c* by fixed-point iteration of a c-map
  interpolated (bilinearly) in a table over (q, c) built by 2-D
  Gauss-Hermite quadrature, chi_c from a second table. Its time and its
  accuracy on the same check points, beside ours.
- ``jacobian_spectrum`` (tanh, Gaussian weights, depth 32, the default grid
  of 400 points) warm with a new ``sigma_w2`` per call: target 0.5 s.
- ``empirical.theory(ds)`` on a sweep of 3 settings x 30 layers, warm:
  target 0.5 s.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import jax
import numpy as np
from scipy import integrate

import empirical
import meanfield
from benchmarks import _common, bench_phase_diagram

N_CALLS = 30
QUICK_CALLS = 3
SIGMA_B2 = 0.05

#: name -> (call with a new value given a counter i, the same call as source for a fresh process)
FUNCTIONS: dict[str, tuple[Callable[[int], object], str]] = {
    "q_map": (lambda i: meanfield.q_map(0.5 + 1e-3 * i, sigma_w2=2.0, sigma_b2=SIGMA_B2,
                                        activation="tanh"),
              "mf.q_map(0.5, sigma_w2=2.0, sigma_b2=0.05, activation='tanh')"),
    "q_map_slope": (lambda i: meanfield.q_map_slope(0.5 + 1e-3 * i, sigma_w2=2.0,
                                                    sigma_b2=SIGMA_B2, activation="tanh"),
                    "mf.q_map_slope(0.5, sigma_w2=2.0, sigma_b2=0.05, activation='tanh')"),
    "c_map": (lambda i: meanfield.c_map(0.5 + 1e-3 * i, sigma_w2=2.5, sigma_b2=SIGMA_B2,
                                        activation="tanh", q=1.0),
              "mf.c_map(0.5, sigma_w2=2.5, sigma_b2=0.05, activation='tanh', q=1.0)"),
    "q_star": (lambda i: meanfield.q_star(sigma_w2=1.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                          activation="tanh"),
               "mf.q_star(sigma_w2=1.5, sigma_b2=0.05, activation='tanh')"),
    "chi_1": (lambda i: meanfield.chi_1(sigma_w2=1.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                        activation="tanh"),
              "mf.chi_1(sigma_w2=1.5, sigma_b2=0.05, activation='tanh')"),
    "fixed_point": (lambda i: meanfield.fixed_point(sigma_w2=2.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                                    activation="tanh"),
                    "mf.fixed_point(sigma_w2=2.5, sigma_b2=0.05, activation='tanh')"),
    "depth_scales": (lambda i: meanfield.depth_scales(sigma_w2=2.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                                      activation="tanh"),
                     "mf.depth_scales(sigma_w2=2.5, sigma_b2=0.05, activation='tanh')"),
    "gradient_depth_scale": (
        lambda i: meanfield.gradient_depth_scale(sigma_w2=2.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                                 activation="tanh"),
        "mf.gradient_depth_scale(sigma_w2=2.5, sigma_b2=0.05, activation='tanh')"),
    "critical_sigma_w2": (lambda i: meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2 + 1e-4 * i,
                                                                activation="tanh"),
                          "mf.critical_sigma_w2(sigma_b2=0.05, activation='tanh')"),
    "critical_line": (lambda i: meanfield.critical_line(0.5 + 1e-3 * i, activation="tanh"),
                      "mf.critical_line(0.5, activation='tanh')"),
    "propagate": (lambda i: meanfield.propagate(q_input=1.0, c_input=0.5, depth=20,
                                                sigma_w2=2.5 + 1e-3 * i, sigma_b2=SIGMA_B2,
                                                activation="tanh"),
                  "mf.propagate(q_input=1.0, c_input=0.5, depth=20, sigma_w2=2.5, "
                  "sigma_b2=0.05, activation='tanh')"),
    "jacobian_moments": (lambda i: meanfield.jacobian_moments(
        activation="tanh", sigma_w2=1.76 + 1e-3 * i, sigma_b2=SIGMA_B2, depth=32,
        init="orthogonal"),
        "mf.jacobian_moments(activation='tanh', sigma_w2=1.76, sigma_b2=0.05, depth=32, "
        "init='orthogonal')"),
    "jacobian_spectrum_edge": (lambda i: meanfield.jacobian_spectrum_edge(
        activation="tanh", sigma_w2=1.76 + 1e-3 * i, sigma_b2=SIGMA_B2, depth=32,
        init="gaussian"),
        "mf.jacobian_spectrum_edge(activation='tanh', sigma_w2=1.76, sigma_b2=0.05, depth=32, "
        "init='gaussian')"),
}

#: What one call computes, for the functions that do more than a few 1-D integrals: the
#: reason, in the results, when one of them is the slowest.
WORK = {
    "propagate": "20 layers, each a 1-D rule and a 600 x 257 matrix product (the c-map's "
                 "Mehler coefficients at that layer's q)",
    "jacobian_spectrum_edge": "q*, the law of phi'^2 in 512 segments (16 nodes each), then "
                              "32 real evaluations of the subordination z(w) on them and "
                              "a few safeguarded Newton steps",
    "critical_sigma_w2": "a 58-point ladder and a Newton solve of 1-D integrals",
    "fixed_point": "q*, then 513 Mehler coefficients and a Newton solve of their series, "
                   "then chi_1 and the depth scales",
}

PHASE_RANGES = (bench_phase_diagram.SIGMA_W2_RANGE, bench_phase_diagram.SIGMA_B2_RANGE)


def _per_call(fn: Callable[[int], object], n: int) -> list[float]:
  """Seconds of each of ``n`` calls ``fn(1) .. fn(n)`` (after ``fn(0)``, which compiles)."""
  jax.block_until_ready(fn(0))
  times = []
  for i in range(1, n + 1):
    start = time.perf_counter()
    jax.block_until_ready(fn(i))
    times.append(time.perf_counter() - start)
  return times


def _timing(name: str, times: list[float], note: str = "") -> _common.Timing:
  t = sorted(times)
  return _common.Timing(name=name, median_s=float(np.median(t)), min_s=t[0], max_s=t[-1],
                        repeats=len(t), number=1, note=note)


def _quad_call(i: int) -> float:
  r = math.sqrt(0.5 + 1e-3 * i)
  pdf = bench_phase_diagram._pdf
  return integrate.quad(lambda z: math.tanh(r * z) ** 2 * pdf(z), -np.inf, np.inf)[0]


def _fresh_process(statement: str) -> float:
  """Seconds of ``statement`` as the first call in a new 64-bit process (import excluded)."""
  script = textwrap.dedent(f"""
      import time, jax
      jax.config.update("jax_enable_x64", True)
      import numpy as np, meanfield as mf
      start = time.perf_counter()
      jax.block_until_ready({statement})
      print(time.perf_counter() - start)
  """)
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
  return float(out.stdout.strip().splitlines()[-1])


# --- the peer: neural-tangents' phase-diagram recipe, in NumPy ------------------------------------


def peer_phase_diagram(sigma_w2: np.ndarray, sigma_b2: np.ndarray, *, n_hermite: int = 64,
                       n_q: int = 200, n_c: int = 200, n_iter: int = 300
                       ) -> dict[str, np.ndarray]:
  """q*, c*, chi_c, xi_c of tanh on the grid, by Gauss-Hermite tables and interpolation.

  q* and chi_1 come from 1-D Gauss-Hermite quadrature (``n_hermite`` nodes)
  and ``n_iter`` fixed-point iterations of the q-map from q = 1. The c-map's
  ``E[phi(u1) phi(u2)]`` and ``E[phi'(u1) phi'(u2)]`` are tabulated by 2-D
  Gauss-Hermite quadrature on ``n_q`` lengths (linear up to the largest q*)
  x ``n_c`` correlations in [0, 1], and interpolated bilinearly; c* comes
  from ``n_iter`` fixed-point iterations from c = 0.5 (c* = 1 where
  chi_1 <= 1). Arrays over ``(sigma_w2, sigma_b2)``.
  """
  x, w = np.polynomial.hermite_e.hermegauss(n_hermite)
  w = w / np.sqrt(2 * np.pi)
  sw2, sb2 = np.meshgrid(sigma_w2, sigma_b2, indexing="ij")
  q = np.ones_like(sw2)
  for _ in range(n_iter):
    q = sw2 * (np.tanh(np.sqrt(q)[..., None] * x) ** 2 @ w) + sb2
  sech2 = lambda h: 1.0 / np.cosh(np.clip(h, -300, 300)) ** 2  # noqa: E731
  chi_1 = sw2 * (sech2(np.sqrt(q)[..., None] * x) ** 2 @ w)
  q_grid = np.linspace(0.0, q.max() * 1.0001, n_q)
  c_grid = np.linspace(0.0, 1.0, n_c)
  z1, z2 = x[:, None], x[None, :]
  ww = w[:, None] * w[None, :]
  cross = np.empty((n_q, n_c))
  dcross = np.empty((n_q, n_c))
  for a, qq in enumerate(q_grid):
    s = np.sqrt(qq)
    u1 = s * z1
    for b, cc in enumerate(c_grid):
      u2 = s * (cc * z1 + np.sqrt(max(1 - cc * cc, 0.0)) * z2)
      cross[a, b] = np.sum(ww * np.tanh(u1) * np.tanh(u2))
      dcross[a, b] = np.sum(ww * sech2(u1) * sech2(u2))

  def interpolate(table, qq, cc):
    fq = np.clip(qq / q_grid[-1] * (n_q - 1), 0, n_q - 1 - 1e-12)
    fc = np.clip(cc * (n_c - 1), 0, n_c - 1 - 1e-12)
    i, j = fq.astype(int), fc.astype(int)
    tq, tc = fq - i, fc - j
    return ((1 - tq) * (1 - tc) * table[i, j] + tq * (1 - tc) * table[i + 1, j]
            + (1 - tq) * tc * table[i, j + 1] + tq * tc * table[i + 1, j + 1])

  c = np.full_like(q, 0.5)
  for _ in range(n_iter):
    c = np.clip((sw2 * interpolate(cross, q, c) + sb2) / q, 0.0, 1.0)
  c = np.where(chi_1 <= 1, 1.0, c)
  chi_c = np.where(chi_1 <= 1, chi_1, sw2 * interpolate(dcross, q, c))
  with np.errstate(divide="ignore"):
    xi_c = -1.0 / np.log(chi_c)
  return {"q_star": q, "c_star": c, "chi_c": chi_c, "xi_c": xi_c}


# --- the benchmark ------------------------------------------------------------------------------


def _scalar_calls(report: _common.Report, quick: bool) -> None:
  n = QUICK_CALLS if quick else N_CALLS
  quad = report.add_timing(_timing("scipy quad of E[tanh(sqrt(q) z)^2], new q per call",
                                   _per_call(_quad_call, n)))
  ratios = {}
  for name, (fn, _) in FUNCTIONS.items():
    timing = report.add_timing(_timing(f"meanfield.{name}, warm, new value per call",
                                       _per_call(fn, n)))
    ratios[name] = timing.median_s / quad.median_s
    report.metric(f"{name} / one quad", ratios[name], unit="x")
  values = np.array(list(ratios.values()))
  slowest = max(ratios, key=ratios.get)
  report.metric("median over the functions, in quads", float(np.median(values)), unit="x",
                note="target <= 10: " + ("met" if np.median(values) <= 10 else "missed"))
  report.metric(f"slowest ({slowest}), in quads", float(values.max()), unit="x",
                note="target <= 30: " + ("met" if values.max() <= 30 else
                                         f"missed; one call: {WORK.get(slowest, 'see its docstring')}"))
  cold = {}
  for name, (_, source) in (list(FUNCTIONS.items())[3:4] if quick else FUNCTIONS.items()):
    cold[name] = _fresh_process(source)
    report.metric(f"first call of {name} in a fresh process", cold[name], unit="s")
  worst = max(cold, key=cold.get)
  report.metric(f"slowest first call ({worst})", cold[worst], unit="s",
                note="target <= 3 s: " + ("met" if cold[worst] <= 3 else "missed"))


def _phase_diagrams(report: _common.Report, quick: bool) -> None:
  sizes = (16,) if quick else (128, 256)
  targets = {128: 3.0, 256: 10.0}
  for n in sizes:
    sw2 = np.linspace(*PHASE_RANGES[0], n)
    sb2 = np.linspace(*PHASE_RANGES[1], n)
    shift = iter(range(1, 100))
    call = lambda: meanfield.phase_diagram(sigma_w2=sw2 * (1 + 1e-9 * next(shift)),  # noqa: E731
                                           sigma_b2=sb2, activation="tanh")
    with jax.enable_x64(True):
      timing = report.time_call(call, name=f"meanfield.phase_diagram {n}x{n}, warm",
                                repeats=1 if quick else 2,
                                note="new sigma_w2 values per call; first call in compile column")
    if n in targets:
      report.metric(f"phase_diagram {n}x{n} warm", timing.median_s, unit="s",
                    note=f"target <= {targets[n]:g} s: "
                         + ("met" if timing.median_s <= targets[n] else "missed"))
  if not quick:
    cold = _fresh_process("mf.phase_diagram(sigma_w2=np.linspace(0.25, 4.0, 128), "
                          "sigma_b2=np.linspace(0.0, 0.3, 128), activation='tanh').c_star.values")
    report.metric("phase_diagram 128x128, first call in a fresh process", cold, unit="s",
                  note="target <= 25 s: " + ("met" if cold <= 25 else "missed"))


def _accuracy(report: _common.Report, quick: bool) -> None:
  n = bench_phase_diagram.QUICK_GRID if quick else bench_phase_diagram.GRID
  sub_w, sub_b = (bench_phase_diagram.QUICK_SUBSET if quick
                  else (bench_phase_diagram.SUBSET, bench_phase_diagram.SUBSET))
  tol = bench_phase_diagram.QUICK_REFERENCE_TOL if quick else bench_phase_diagram.REFERENCE_TOL
  sw2 = np.linspace(*PHASE_RANGES[0], n)
  sb2 = np.linspace(*PHASE_RANGES[1], n)
  points = [(i, j) for i in sub_w for j in sub_b]
  reference = {}
  for i, j in points:
    _, c, _, xi_c = bench_phase_diagram.reference_point(float(sw2[i]), float(sb2[j]), tol=tol)
    reference[i, j] = {"c_star": c, "chi_c": math.exp(-1.0 / xi_c), "xi_c": xi_c}
  result = []
  grid = meanfield.Network(activation="tanh", sigma_w2=sw2, sigma_b2=sb2)
  with jax.enable_x64(True):
    ours_timing = report.time_call(
        lambda: result.append(meanfield.phase_diagram(grid)),
        name=f"meanfield.phase_diagram {n}x{n} (the accuracy run)", repeats=1)
  ours = {k: result[-1][k].values for k in ("c_star", "chi_c", "xi_c")}
  peer: dict[str, np.ndarray] = {}
  peer_timing = report.time_call(lambda: peer.update(peer_phase_diagram(sw2, sb2)),
                                 name=f"peer (neural-tangents recipe, NumPy) {n}x{n}",
                                 repeats=1, warmup=False)
  report.compare(f"peer / meanfield.phase_diagram ({n}x{n})", peer_timing, ours_timing,
                 note="below 1: the peer is faster, at the accuracy reported beside it")
  for label, values in (("meanfield", ours), ("peer", peer)):
    for key in ("c_star", "chi_c", "xi_c"):
      err = max(abs(values[key][i, j] - reference[i, j][key]) / abs(reference[i, j][key])
                for i, j in points)
      note = ("target <= 1e-9: " + ("met" if err <= 1e-9 else "missed")) if label == "meanfield" else ""
      report.metric(f"{label}: max relative error of {key} ({len(points)} check points)", err,
                    note=note)
  report.params["peer"] = ("64 Gauss-Hermite nodes per dimension, 200 x 200 (q, c) table, "
                           "300 fixed-point iterations")


def _spectrum_and_overlay(report: _common.Report, quick: bool) -> None:
  n = QUICK_CALLS if quick else 10
  with jax.enable_x64(True):
    spectrum = report.add_timing(_timing(
        "meanfield.jacobian_spectrum (tanh, Gaussian, depth 32, default grid), warm",
        _per_call(lambda i: meanfield.jacobian_spectrum(
            activation="tanh", sigma_w2=1.76 + 1e-3 * i, sigma_b2=SIGMA_B2, depth=32,
            init="gaussian").singular_value_density, n)))
  report.metric("jacobian_spectrum default grid, warm", spectrum.median_s, unit="s",
                note="target <= 0.5 s: " + ("met" if spectrum.median_s <= 0.5 else "missed"))
  ds = empirical.sweep(jax.random.key(0), activation="tanh", width=32, depth=30,
                       sigma_w2=[1.0, 1.76, 2.5], sigma_b2=SIGMA_B2, n_seeds=2, n_inputs=8,
                       in_features=32, progress=False)
  overlay = report.add_timing(_timing("empirical.theory(ds), 3 settings x 30 layers, warm",
                                      _per_call(lambda i: empirical.theory(ds).q.values, n)))
  report.metric("empirical.theory(ds), warm", overlay.median_s, unit="s",
                note="target <= 0.5 s: " + ("met" if overlay.median_s <= 0.5 else "missed"))


def run(*, quick: bool = False) -> _common.Report:
  report = _common.Report(params={"activation": "tanh", "dtype": "float64",
                                  "calls per function": QUICK_CALLS if quick else N_CALLS})
  with jax.enable_x64(True):
    _scalar_calls(report, quick)
  _phase_diagrams(report, quick)
  _accuracy(report, quick)
  _spectrum_and_overlay(report, quick)
  return report
