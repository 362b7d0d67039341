"""Theory at interactive speed: warm and first calls of every theory function, phase diagrams, a peer.

What is timed, in 64-bit on the machine at hand, all in one run:

- Each public theory function with a scalar argument (tanh), warm: compiled
  once, then ``N_CALLS`` calls each with a new value (so a cache keyed on
  values would not help); the median per call. The calls take a
  ``meanfield.Network`` (:data:`FUNCTIONS`), each built before the timing.
  Beside them, one ``scipy.integrate.quad`` of ``E[tanh(sqrt(q) z)^2]`` with a new ``q`` per
  call, about what scipy needs for one step of a fixed-point iteration.
  Targets: the median over the functions at most 10 quads, the slowest at
  most 30.
- The first call of each function in a fresh process (import and building
  its Network excluded): target 3 s or less.
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
from typing import Any, NamedTuple

import jax
import numpy as np
from scipy import integrate

import empirical
import meanfield
from benchmarks import _common, bench_phase_diagram

N_CALLS = 30
QUICK_CALLS = 3
SIGMA_B2 = 0.05

#: The network of the scalar calls; each case replaces some fields.
TANH = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=SIGMA_B2)


class Case(NamedTuple):
  """One theory function's timed call ``call(network(i), i)``: the Network of call ``i`` is
  built before the timing (``None`` where the function takes none); ``source`` is the first
  call (``i = 0``) for a fresh process, where ``net`` is that Network."""

  network: Callable[[int], meanfield.Network | None]
  call: Callable[[meanfield.Network | None, int], object]
  source: str


def _new(field: str, start: float, step: float = 1e-3, **fixed) -> Callable[[int], Any]:
  """Call ``i``'s Network: :data:`TANH` with ``fixed`` and ``field = start + step * i``."""
  return lambda i: TANH.replace(**fixed, **{field: start + step * i})


def _same(**fixed) -> Callable[[int], Any]:
  """One Network for every call (the new value is an argument besides it)."""
  net = TANH.replace(**fixed)
  return lambda i: net


FUNCTIONS: dict[str, Case] = {
    "q_map": Case(_same(sigma_w2=2.0),
                  lambda net, i: meanfield.q_map(0.5 + 1e-3 * i, network=net),
                  "mf.q_map(0.5, network=net)"),
    "q_map_slope": Case(_same(sigma_w2=2.0),
                        lambda net, i: meanfield.q_map_slope(0.5 + 1e-3 * i, network=net),
                        "mf.q_map_slope(0.5, network=net)"),
    "c_map": Case(_same(sigma_w2=2.5),
                  lambda net, i: meanfield.c_map(0.5 + 1e-3 * i, network=net, q=1.0),
                  "mf.c_map(0.5, network=net, q=1.0)"),
    "q_star": Case(_new("sigma_w2", 1.5), lambda net, i: meanfield.q_star(net), "mf.q_star(net)"),
    "chi_1": Case(_new("sigma_w2", 1.5), lambda net, i: meanfield.chi_1(net), "mf.chi_1(net)"),
    "fixed_point": Case(_new("sigma_w2", 2.5), lambda net, i: meanfield.fixed_point(net),
                        "mf.fixed_point(net)"),
    "depth_scales": Case(_new("sigma_w2", 2.5), lambda net, i: meanfield.depth_scales(net),
                         "mf.depth_scales(net)"),
    "gradient_depth_scale": Case(_new("sigma_w2", 2.5),
                                 lambda net, i: meanfield.gradient_depth_scale(net),
                                 "mf.gradient_depth_scale(net)"),
    "critical_sigma_w2": Case(_new("sigma_b2", SIGMA_B2, 1e-4),
                              lambda net, i: meanfield.critical_sigma_w2(net),
                              "mf.critical_sigma_w2(net)"),
    # a function of the length q alone: no network to describe
    "critical_line": Case(lambda i: None,
                          lambda net, i: meanfield.critical_line(0.5 + 1e-3 * i,
                                                                 activation="tanh"),
                          "mf.critical_line(0.5, activation='tanh')"),
    "propagate": Case(_new("sigma_w2", 2.5, depth=20),
                      lambda net, i: meanfield.propagate(net, q_input=1.0, c_input=0.5),
                      "mf.propagate(net, q_input=1.0, c_input=0.5)"),
    "jacobian_moments": Case(_new("sigma_w2", 1.76, depth=32, init="orthogonal"),
                             lambda net, i: meanfield.jacobian_moments(net),
                             "mf.jacobian_moments(net)"),
    "jacobian_spectrum_edge": Case(_new("sigma_w2", 1.76, depth=32, init="gaussian"),
                                   lambda net, i: meanfield.jacobian_spectrum_edge(net),
                                   "mf.jacobian_spectrum_edge(net)"),
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


def _per_call(fn: Callable[..., object], args: list[tuple]) -> list[float]:
  """Seconds of each call ``fn(*a)`` for ``a`` in ``args[1:]`` (after ``fn(*args[0])``, which
  compiles); the arguments (Networks, say) are built before, outside the timing."""
  jax.block_until_ready(fn(*args[0]))
  times = []
  for a in args[1:]:
    start = time.perf_counter()
    jax.block_until_ready(fn(*a))
    times.append(time.perf_counter() - start)
  return times


def _counter(n: int) -> list[tuple[int]]:
  """The arguments ``(0,) .. (n,)`` of :func:`_per_call` for a call of a counter alone."""
  return [(i,) for i in range(n + 1)]


def _case_args(case: Case, n: int) -> list[tuple]:
  """The arguments ``(network(i), i)``, ``i = 0..n``, of ``case``'s calls."""
  return [(case.network(i), i) for i in range(n + 1)]


def _timing(name: str, times: list[float], note: str = "") -> _common.Timing:
  t = sorted(times)
  return _common.Timing(name=name, median_s=float(np.median(t)), min_s=t[0], max_s=t[-1],
                        repeats=len(t), number=1, note=note)


def _quad_call(i: int) -> float:
  r = math.sqrt(0.5 + 1e-3 * i)
  pdf = bench_phase_diagram._pdf
  return integrate.quad(lambda z: math.tanh(r * z) ** 2 * pdf(z), -np.inf, np.inf)[0]


def _network_source(net: meanfield.Network | None) -> str:
  """Source that builds ``net`` as ``net`` (empty for None); its variances are numbers."""
  if net is None:
    return ""
  return (f"net = mf.Network(activation={net.activation!r}, sigma_w2={net.sigma_w2!r}, "
          f"sigma_b2={net.sigma_b2!r}, depth={net.depth!r}, init={net.init!r})")


def _fresh_process(statement: str, setup: str = "") -> float:
  """Seconds of ``statement`` as the first call in a new 64-bit process (import and ``setup``,
  which builds the network, excluded)."""
  script = textwrap.dedent(f"""
      import time, jax
      jax.config.update("jax_enable_x64", True)
      import numpy as np, meanfield as mf
      {setup}
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
                                   _per_call(_quad_call, _counter(n))))
  ratios = {}
  for name, case in FUNCTIONS.items():
    timing = report.add_timing(_timing(f"meanfield.{name}, warm, new value per call",
                                       _per_call(case.call, _case_args(case, n))))
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
  for name, case in (list(FUNCTIONS.items())[3:4] if quick else FUNCTIONS.items()):
    cold[name] = _fresh_process(case.source, _network_source(case.network(0)))
    report.metric(f"first call of {name} in a fresh process", cold[name], unit="s")
  worst = max(cold, key=cold.get)
  report.metric(f"slowest first call ({worst})", cold[worst], unit="s",
                note="target <= 3 s: " + ("met" if cold[worst] <= 3 else "missed"))


def _phase_diagrams(report: _common.Report, quick: bool) -> None:
  sizes = (16,) if quick else (128, 256)
  targets = {128: 3.0, 256: 10.0}
  for n in sizes:
    grid = meanfield.Network(activation="tanh", sigma_w2=np.linspace(*PHASE_RANGES[0], n),
                             sigma_b2=np.linspace(*PHASE_RANGES[1], n))
    # new sigma_w2 values per call, their Networks built before the timing
    grids = iter([grid.replace(sigma_w2=grid.sigma_w2 * (1 + 1e-9 * k)) for k in range(1, 100)])
    call = lambda: meanfield.phase_diagram(next(grids))  # noqa: E731
    with jax.enable_x64(True):
      timing = report.time_call(call, name=f"meanfield.phase_diagram {n}x{n}, warm",
                                repeats=1 if quick else 2,
                                note="new sigma_w2 values per call; first call in compile column")
    if n in targets:
      report.metric(f"phase_diagram {n}x{n} warm", timing.median_s, unit="s",
                    note=f"target <= {targets[n]:g} s: "
                         + ("met" if timing.median_s <= targets[n] else "missed"))
  if not quick:
    cold = _fresh_process("mf.phase_diagram(net).c_star.values",
                          "net = mf.Network(activation='tanh', sigma_w2=np.linspace(0.25, 4.0, "
                          "128), sigma_b2=np.linspace(0.0, 0.3, 128))")
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
  nets = [(TANH.replace(sigma_w2=1.76 + 1e-3 * i, depth=32, init="gaussian"),)
          for i in range(n + 1)]
  with jax.enable_x64(True):
    spectrum = report.add_timing(_timing(
        "meanfield.jacobian_spectrum (tanh, Gaussian, depth 32, default grid), warm",
        _per_call(lambda net: meanfield.jacobian_spectrum(net).singular_value_density, nets)))
  report.metric("jacobian_spectrum default grid, warm", spectrum.median_s, unit="s",
                note="target <= 0.5 s: " + ("met" if spectrum.median_s <= 0.5 else "missed"))
  swept = TANH.replace(sigma_w2=np.array([1.0, 1.76, 2.5]), depth=30, width=32)
  ds = empirical.sweep(jax.random.key(0), network=swept, n_seeds=2, n_inputs=8, in_features=32,
                       progress=False)
  overlay = report.add_timing(_timing("empirical.theory(ds), 3 settings x 30 layers, warm",
                                      _per_call(lambda i: empirical.theory(ds).q.values,
                                                _counter(n))))
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
