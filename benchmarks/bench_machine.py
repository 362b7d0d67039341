"""The machine's own limits: float32 matmul throughput (jnp.dot), memory bandwidth and normal samples per second for each JAX PRNG.

What is timed (warm, compile apart):

- ``jnp.dot`` of two square float32 matrices (``MATMUL_SIZES``) at full
  float32 precision (``"highest"``, as the experiment runs): GFLOP/s
  ``= 2 n^3 / t``. The largest is taken as the machine's matmul peak.
- Memory bandwidth: ``2 x + 1`` over ``BANDWIDTH_BYTES`` of float32 (read
  and written once): GB/s ``= 2 bytes / t``.
- The matmul shape of a sweep layer: 8 networks, each ``(64, 256) @ (256, 256)``,
  as one batched ``jnp.matmul`` (what ``vmap`` over networks makes of it).
- ``jax.random.normal`` of ``RNG_SAMPLES`` float32 samples with a key of each
  PRNG implementation JAX offers (``jax.random.key(0, impl=...)``:
  ``threefry2x32``, the default; ``rbg``; ``unsafe_rbg``), as samples per
  second; and the same drawn as a sweep draws weights: one
  ``(256, 256)`` block per ``fold_in(key, layer)``, 30 layers x 8 networks,
  vmapped.

A sweep of many small-batch networks is bounded by whichever of the two,
matrix products or random numbers, takes longer (see ``bench_sweep``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks import _common

MATMUL_SIZES = (512, 2048)
QUICK_MATMUL_SIZES = (256,)
BANDWIDTH_BYTES = 1 << 28
QUICK_BANDWIDTH_BYTES = 1 << 22
RNG_SAMPLES = 1 << 24
QUICK_RNG_SAMPLES = 1 << 16
IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
# The sweep's draw: networks x layers blocks of width x width.
DRAW_NETWORKS, DRAW_LAYERS, DRAW_WIDTH = 8, 30, 256


def matmul_gflops(report: _common.Report, n: int, *, repeats: int = 5,
                  precision: str = "highest") -> float:
  """Time ``jnp.dot`` of two ``(n, n)`` float32 matrices; GFLOP/s of the median.

  Compiled under ``jax.default_matmul_precision(precision)``: ``"highest"``
  (full float32, what the experiment runs at) by default; on GPUs
  ``"default"`` is JAX's own TF32-class rate. On the CPU they are the same.
  """
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  with jax.default_matmul_precision(precision):
    t = report.time_jitted(jnp.dot, a, b, name=f"jnp.dot {n}x{n} float32, {precision}",
                           repeats=repeats, number=max(1, int(2048 ** 3 / n ** 3) // 4 or 1))
  gflops = 2.0 * n ** 3 / t.median_s / 1e9
  suffix = "" if precision == "highest" else f", precision {precision}"
  report.metric(f"matmul {n}x{n}{suffix}", gflops, unit="GFLOP/s", note="2 n^3 / median time")
  return gflops


def bandwidth_gbs(report: _common.Report, n_bytes: int, *, repeats: int = 5) -> float:
  """Memory bandwidth: time ``2 x + 1`` over ``n_bytes`` of float32; GB/s of the median.

  The program reads and writes every element once: ``2 n_bytes`` moved.
  """
  x = jnp.ones((n_bytes // 4,), jnp.float32)
  t = report.time_jitted(lambda v: 2.0 * v + 1.0, x, name=f"2 x + 1 over {n_bytes >> 20} MiB",
                         repeats=repeats, number=4)
  gbs = 2.0 * n_bytes / t.median_s / 1e9
  report.metric("memory bandwidth", gbs, unit="GB/s",
                note=f"read + write of {n_bytes >> 20} MiB float32 / median time")
  return gbs


def normal_rate(report: _common.Report, impl: str, n: int, *, repeats: int = 5) -> float:
  """Time ``jax.random.normal(key, (n,))`` for a key of ``impl``; samples per second."""
  key = jax.random.key(0, impl=impl)
  t = report.time_jitted(lambda k, *, n: jax.random.normal(k, (n,), jnp.float32), key, n=n,
                         name=f"normal {n} samples, {impl}", repeats=repeats)
  rate = n / t.median_s
  report.metric(f"normal samples/s, {impl}", rate, unit="1/s", note="one flat draw")
  return rate


def _draw_like_sweep(key, *, networks: int, layers: int, width: int):
  def network(i):
    k = jax.random.fold_in(key, i)
    return jax.vmap(lambda l: jax.random.normal(jax.random.fold_in(k, l), (width, width),
                                                jnp.float32))(jnp.arange(layers))
  return jax.vmap(network)(jnp.arange(networks))


def sweep_draw_rate(report: _common.Report, impl: str, *, networks: int, layers: int,
                    width: int, repeats: int = 5) -> float:
  """Normal samples per second drawn as a sweep draws weights (per-layer ``fold_in``)."""
  key = jax.random.key(0, impl=impl)
  t = report.time_jitted(_draw_like_sweep, key, networks=networks, layers=layers, width=width,
                         name=f"sweep-style draw {networks}x{layers}x{width}^2, {impl}",
                         repeats=repeats)
  rate = networks * layers * width * width / t.median_s
  report.metric(f"normal samples/s as a sweep draws them, {impl}", rate, unit="1/s",
                note=f"{networks} networks x {layers} blocks ({width}, {width}), one fold_in each")
  return rate


def run(*, quick: bool = False) -> _common.Report:
  sizes = QUICK_MATMUL_SIZES if quick else MATMUL_SIZES
  samples = QUICK_RNG_SAMPLES if quick else RNG_SAMPLES
  nets, layers, width = (2, 3, 32) if quick else (DRAW_NETWORKS, DRAW_LAYERS, DRAW_WIDTH)
  repeats = 2 if quick else 5
  report = _common.Report(params={
      "matmul sizes": list(sizes), "normal samples": samples, "PRNG implementations": list(IMPLS),
      "sweep-style draw": f"{nets} networks x {layers} layers x ({width}, {width})",
      "dtype": "float32"})
  for n in sizes:
    matmul_gflops(report, n, repeats=repeats)
  bandwidth_gbs(report, QUICK_BANDWIDTH_BYTES if quick else BANDWIDTH_BYTES, repeats=repeats)
  # The sweep's layer product, batched over 8 networks (one vmapped matmul).
  batch = 16 if quick else 64
  a = jax.random.normal(jax.random.key(2), (nets, batch, width), jnp.float32)
  w = jax.random.normal(jax.random.key(3), (nets, width, width), jnp.float32)
  t = report.time_jitted(jnp.matmul, a, w, name=f"batched matmul {nets} x ({batch},{width})@({width},{width})",
                         repeats=repeats, number=20)
  report.metric("batched small matmul (a sweep layer)", 2.0 * nets * batch * width * width
                / t.median_s / 1e9, unit="GFLOP/s", note="8 networks' layer products at once")
  for impl in IMPLS:
    normal_rate(report, impl, samples, repeats=repeats)
  for impl in IMPLS:
    sweep_draw_rate(report, impl, networks=nets, layers=layers, width=width, repeats=repeats)
  return report
