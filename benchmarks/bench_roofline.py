"""The sweep and the theory grid as fractions of this machine's roofline (float32 matmul rate, memory bandwidth), measured in one run.

What is measured, in one run on the default device (named in the results'
file name and header):

- The machine: float32 ``jnp.dot`` 2048 x 2048 at full precision
  (``"highest"``, as every driver runs; on GPUs also at JAX's default,
  TF32-class, for comparison), ``P`` GFLOP/s; memory bandwidth ``2 x + 1``
  over 256 MiB, ``BW`` GB/s (:mod:`benchmarks.bench_machine`).
- The sweep: ``empirical.sweep`` of :data:`SWEEP` (tanh, width 256, depth
  30, 64 inputs, 8 ``sigma_w2`` x 64 seeds = 512 networks; smaller on the
  CPU, :data:`CPU_SWEEP`), warm. Its work by count: ``4 B N^2 L`` flops per
  network (forward and backward products) and, per seed (the settings share
  its standard weights), ``12 L N^2`` bytes (each weight written by the
  random draw and read forward and backward), plus ``8 B N L`` bytes per
  network (activations kept for the backward pass, written and read).
- The theory grid: ``meanfield.fixed_point`` of tanh over an ``n x n`` grid
  of ``(sigma_w2, sigma_b2)`` (the heart of ``phase_diagram``), jitted, in
  64-bit, warm. Its work is XLA's own count for the compiled program
  (``compiled.cost_analysis()``: flops and bytes accessed; a loop's body is
  counted once, so this is a lower bound on the work done).

Each is reported as a fraction of its roofline, ``max(flops / P, bytes /
BW) / time`` (1 is the machine's limit; the theory grid's flops are
float64 elementwise work measured against the float32 matmul rate, so its
fraction by flops is an upper bound on what is reachable).
"""

from __future__ import annotations

import jax
import numpy as np

import empirical
import meanfield
from benchmarks import _common, bench_machine

SWEEP = dict(width=256, depth=30, batch=64, settings=8, seeds=64)
CPU_SWEEP = dict(width=128, depth=20, batch=32, settings=4, seeds=32)
QUICK_SWEEP = dict(width=16, depth=3, batch=4, settings=2, seeds=2)
GRID, CPU_GRID, QUICK_GRID = 256, 64, 8


def _fraction(report, label, seconds, *, flops, n_bytes, peak, bandwidth) -> float:
  bound = max(flops / (peak * 1e9), n_bytes / (bandwidth * 1e9))
  which = "matmul" if flops / peak >= n_bytes / bandwidth else "bandwidth"
  report.metric(f"{label}: achieved GFLOP/s", flops / seconds / 1e9, unit="GFLOP/s")
  report.metric(f"{label}: achieved GB/s", n_bytes / seconds / 1e9, unit="GB/s")
  report.metric(f"{label}: fraction of roofline", bound / seconds,
                note=f"roofline {bound:.3g} s, bound by {which}")
  return bound / seconds


def _sweep(report, size, *, peak, bandwidth, repeats):
  w, d, b = size["width"], size["depth"], size["batch"]
  net = meanfield.Network(activation="tanh", sigma_w2=np.linspace(1.0, 2.4, size["settings"]),
                          sigma_b2=0.05, depth=d, width=w)
  n_nets = size["settings"] * size["seeds"]
  timing = report.time_call(
      lambda: empirical.sweep(jax.random.key(0), network=net, n_seeds=size["seeds"],
                              n_inputs=b, in_features=w, progress=False),
      name=f"empirical.sweep, {n_nets} networks", repeats=repeats)
  flops = 4.0 * b * w * w * d * n_nets
  n_bytes = 12.0 * d * w * w * size["seeds"] + 8.0 * b * w * d * n_nets
  return _fraction(report, "sweep", timing.median_s, flops=flops, n_bytes=n_bytes, peak=peak,
                   bandwidth=bandwidth)


def _theory_grid(report, n, *, peak, bandwidth, repeats):
  w = np.linspace(0.25, 4.0, n)[:, None]
  b = np.linspace(0.0, 0.3, n)[None, :]

  def solve(sw, sb):
    return meanfield.fixed_point(meanfield.Network(activation="tanh", sigma_w2=sw, sigma_b2=sb))

  with jax.enable_x64(True):
    w, b = jax.numpy.asarray(w), jax.numpy.asarray(b)
    compiled = jax.jit(solve).lower(w, b).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    timing = report.time_jitted(jax.jit(solve), w, b, repeats=repeats,
                                name=f"meanfield.fixed_point over {n}x{n} (float64)")
  return _fraction(report, "theory grid", timing.median_s, flops=float(cost.get("flops", 0.0)),
                   n_bytes=float(cost.get("bytes accessed", 0.0)), peak=peak,
                   bandwidth=bandwidth)


def run(*, quick: bool = False) -> _common.Report:
  device = jax.devices()[0]
  on_cpu = device.platform == "cpu"
  size = QUICK_SWEEP if quick else CPU_SWEEP if on_cpu else SWEEP
  n = QUICK_GRID if quick else CPU_GRID if on_cpu else GRID
  repeats = 1 if quick else 3
  report = _common.Report(params={
      "device": f"{device.platform}: {device.device_kind}",
      "sweep": (f"tanh, width {size['width']}, depth {size['depth']}, batch {size['batch']}, "
                f"{size['settings']} sigma_w2 x {size['seeds']} seeds"),
      "theory grid": f"fixed_point, tanh, {n} x {n} (sigma_w2, sigma_b2), float64",
      "matmul precision": "highest"})
  peak = bench_machine.matmul_gflops(report, 256 if quick else 2048, repeats=repeats)
  if not on_cpu:
    bench_machine.matmul_gflops(report, 256 if quick else 2048, repeats=repeats,
                                precision="default")
  bandwidth = bench_machine.bandwidth_gbs(
      report, bench_machine.QUICK_BANDWIDTH_BYTES if quick else bench_machine.BANDWIDTH_BYTES,
      repeats=repeats)
  _sweep(report, size, peak=peak, bandwidth=bandwidth, repeats=repeats)
  _theory_grid(report, n, peak=peak, bandwidth=bandwidth, repeats=repeats)
  return report
