"""Compile time and run time of empirical.sweep against depth (10, 100, 1000): flat compile thanks to scan.

What is timed, for tanh networks of width 64, 16 Gaussian inputs, 4 seeds:

- ``empirical.sweep`` at each depth: the first call (tracing and compiling
  the per-chunk program, plus one run) and the warm calls. Compile time is
  reported as first call minus the warm median.
- For contrast, the same forward statistics and gradients written with a
  Python loop over layers inside ``jax.jit`` (unrolled: XLA sees every
  layer), compiled ahead of time at depths 10 and 100 only (1000 unrolled
  layers would take minutes to compile).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import empirical
import meanfield
from benchmarks import _common

DEPTHS = (10, 100, 1000)
UNROLLED_DEPTHS = (10, 100)
WIDTH, BATCH, SEEDS = 64, 16, 4
QUICK = dict(depths=(4, 16), unrolled=(4,), width=16, batch=4, seeds=2)


def _unrolled_stats(w, x, r):
  """Per-layer q and weight-gradient norms with a Python loop over layers (unrolled by jit)."""
  def loss(w):
    a, qs = x, []
    for l in range(w.shape[0]):
      h = a @ w[l]
      qs.append(jnp.mean(h * h))
      a = jnp.tanh(h)
    return jnp.sum(a @ r), jnp.stack(qs)

  grads, q = jax.grad(loss, has_aux=True)(w)
  return q, jnp.sqrt(jnp.sum(grads * grads, axis=(1, 2)))


def run(*, quick: bool = False) -> _common.Report:
  depths = QUICK["depths"] if quick else DEPTHS
  unrolled = QUICK["unrolled"] if quick else UNROLLED_DEPTHS
  width, batch, seeds = (QUICK["width"], QUICK["batch"], QUICK["seeds"]) if quick else (
      WIDTH, BATCH, SEEDS)
  repeats = 1 if quick else 3
  report = _common.Report(params={
      "network": f"tanh MLP, width {width}, in_features {width}", "batch": batch,
      "seeds": seeds, "depths": list(depths), "unrolled depths": list(unrolled),
      "sigma_w2": 1.5, "sigma_b2": 0.05, "dtype": "float32"})
  key = jax.random.key(0)
  # depth is static: one Network per depth
  nets = [meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=d, width=width)
          for d in depths]
  compile_s = {}
  for net in nets:
    depth = net.depth
    t = report.time_call(
        lambda net=net: empirical.sweep(key, network=net, n_seeds=seeds, n_inputs=batch,
                                        in_features=width, progress=False),
        name=f"empirical.sweep depth {depth}", repeats=repeats,
        note="compile column: first call (trace + compile + one run)")
    compile_s[depth] = t.compile_s - t.median_s
    report.metric(f"sweep compile time, depth {depth}", compile_s[depth], unit="s",
                  note="first call minus warm median")
    report.metric(f"sweep run time per layer-network, depth {depth}",
                  t.median_s / (depth * seeds), unit="s")
  report.metric(f"sweep compile time ratio, depth {depths[-1]} / depth {depths[0]}",
                compile_s[depths[-1]] / compile_s[depths[0]],
                note=f"{depths[-1] // depths[0]}x the layers; flat (about 1) with scan")
  for depth in unrolled:
    w = jax.random.normal(jax.random.key(1), (depth, width, width)) / jnp.sqrt(width)
    x = jax.random.normal(jax.random.key(2), (batch, width))
    r = jnp.ones((width,)) / jnp.sqrt(width)
    t = report.time_jitted(_unrolled_stats, w, x, r, name=f"unrolled jit, depth {depth}",
                           repeats=repeats, note="Python loop over layers inside jit; one network")
    report.metric(f"unrolled compile time, depth {depth}", t.compile_s, unit="s",
                  note="lower + compile")
  report.metric(f"unrolled compile time ratio, depth {unrolled[-1]} / depth {unrolled[0]}",
                report.metrics[-1].value / next(m.value for m in report.metrics
                                                if m.name == f"unrolled compile time, depth {unrolled[0]}"),
                note="grows with depth without scan")
  return report
