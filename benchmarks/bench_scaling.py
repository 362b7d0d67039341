"""Scaling of empirical.sweep with the number of networks and with width; peak memory against memory_budget.

What is timed (warm; tanh, depth 10, 32 Gaussian inputs):

- networks: 8, 32, 128 seeds at width 128; time per network should fall
  towards a constant as the fixed costs are spread;
- width: 64, 128, 256, 512 at 16 seeds; the work grows as ``N^2`` (weights
  to draw and matrix products), so time / ``N^2`` should be about flat.

Peak memory: a sweep of 64 networks of width 256, depth 30, batch 64 runs in
a fresh subprocess for each ``memory_budget``; reported is the process's
maximum resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
Linux) after the sweep, and the same before it (after imports and a tiny
sweep). JAX's CPU device reports no memory statistics
(``jax.devices()[0].memory_stats()`` is None). The peak includes the
interpreter, XLA's compiler and its buffers, so it bounds from above what the
budget governs (the per-chunk working set); a peak equal to the one before
the sweep means the sweep stayed below what compiling had already used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax

import empirical
import meanfield
from benchmarks import _common

NETWORKS = (8, 32, 128)
WIDTHS = (64, 128, 256, 512)
DEPTH, BATCH = 10, 32
BUDGETS_MIB = (64, 512)
QUICK = dict(networks=(2, 4), widths=(16, 32), depth=3, batch=4, budgets=(16,))

_PEAK = textwrap.dedent("""
  import json, resource, sys, jax, empirical, meanfield
  kw = json.loads(sys.argv[1])
  tiny = meanfield.Network(activation="tanh", sigma_w2=1.0, depth=2, width=8)
  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=kw.pop("depth"),
                          width=kw.pop("width"))
  empirical.sweep(jax.random.key(1), network=tiny, n_seeds=2, n_inputs=2, in_features=8,
                  progress=False, devices=1)
  base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  empirical.sweep(jax.random.key(0), network=net, progress=False, devices=1, **kw)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  print(json.dumps({"base_kib": base, "peak_kib": peak}))
""")


def peak_memory(**sweep_kwargs) -> dict:
  """Max RSS (KiB) of a fresh process before and after one sweep with ``sweep_kwargs``.

  ``depth`` and ``width`` of ``sweep_kwargs`` go into the swept tanh Network
  (``sigma_w2 = 1.5``, ``sigma_b2 = 0.05``), the rest to :func:`empirical.sweep`.
  """
  done = subprocess.run([sys.executable, "-c", _PEAK, json.dumps(sweep_kwargs)],
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  if done.returncode:
    raise RuntimeError(f"peak-memory subprocess failed: {done.stderr[-2000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(*, quick: bool = False) -> _common.Report:
  networks = QUICK["networks"] if quick else NETWORKS
  widths = QUICK["widths"] if quick else WIDTHS
  depth, batch = (QUICK["depth"], QUICK["batch"]) if quick else (DEPTH, BATCH)
  budgets = QUICK["budgets"] if quick else BUDGETS_MIB
  repeats = 1 if quick else 3
  report = _common.Report(params={
      "network": f"tanh MLP, depth {depth}, in_features = width", "batch": batch,
      "networks (width 128)": list(networks), "widths (16 seeds)": list(widths),
      "memory budgets (MiB)": list(budgets), "dtype": "float32"})
  key = jax.random.key(0)
  base = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=depth)

  def sweep(n, w):
    net = base.replace(width=w)       # built here, outside the timed call
    return lambda: empirical.sweep(key, network=net, n_seeds=n, n_inputs=batch, in_features=w,
                                   progress=False)

  base_width = 16 if quick else 128
  per_net = {}
  for n in networks:
    t = report.time_call(sweep(n, base_width), name=f"{n} networks, width {base_width}",
                         repeats=repeats)
    per_net[n] = t
    report.metric(f"time per network, {n} networks", t.median_s / n, unit="s")
  report.compare(f"{networks[-1]} / {networks[0]} networks (time)", per_net[networks[-1]],
                 per_net[networks[0]], note=f"{networks[-1] // networks[0]}x the networks")
  seeds = 2 if quick else 16
  per_width = {}
  for w in widths:
    t = report.time_call(sweep(seeds, w), name=f"width {w}, {seeds} networks", repeats=repeats)
    per_width[w] = t
    report.metric(f"time / N^2, width {w}", t.median_s / w ** 2 * 1e6, unit="us",
                  note="flat when the N^2 work (draws, products) dominates")
  report.compare(f"width {widths[-1]} / width {widths[0]} (time)", per_width[widths[-1]],
                 per_width[widths[0]], note=f"{(widths[-1] // widths[0]) ** 2}x the N^2 work")

  big = (dict(width=32, depth=4, n_seeds=8, n_inputs=8, in_features=32) if quick else
         dict(width=256, depth=30, n_seeds=64, n_inputs=64, in_features=256))
  for mib in budgets:
    m = peak_memory(memory_budget=mib << 20, **big)
    report.metric(f"peak RSS, memory_budget {mib} MiB", m["peak_kib"] / 1024, unit="MiB",
                  note=f"max RSS of a fresh process over its life; {big['n_seeds']} networks, "
                       f"width {big['width']}, depth {big['depth']}, batch {big['n_inputs']}")
    report.metric(f"peak RSS before the sweep, memory_budget {mib} MiB", m["base_kib"] / 1024,
                  unit="MiB", note="after imports and a tiny sweep (compiler included)")
  return report
