"""Jacobian singular values of a batch of random networks: empirical.jacobian_spectra against a per-network loop.

What is timed (tanh, width 128, depth 16, ``sigma_w2 = 1.5``, ``sigma_b2 =
0.05``, input at the fixed point ``q*``, float32):

- ``empirical.jacobian_spectra`` for 32 seeds (``method="svd"``: the
  explicit layer product ``J``, then its singular values), warm.
- The loop a user would otherwise write: per network, draw the weights,
  ``jax.jacrev`` of the jitted forward pass for ``J`` (compiled once; the
  shapes do not change), then ``numpy.linalg.svd``. Timed on 8 networks and
  extrapolated to 32 (the note says so).

Agreement: the loop recomputes network 0 from the same weights
(``empirical.models.standard_params`` with the sweep's key convention), and
its singular values are compared with the sweep's (max relative error over
the largest half, where float32 resolves them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import meanfield
from benchmarks import _common
from empirical import spectra as _spectra
from empirical import streams
from empirical.models import layer_scales, network_key, scale_params, standard_params

WIDTH, DEPTH, SEEDS, LOOP = 128, 16, 32, 8
SIGMA_W2, SIGMA_B2 = 1.5, 0.05
QUICK = dict(width=16, depth=3, seeds=4, loop=2)


def _network(key, seed, net: meanfield.Network):
  """Weights ``(L, N, N)`` and biases ``(L, N)`` of sweep network ``seed`` of ``net`` (square)."""
  width, depth = net.width, net.depth
  k = network_key(key, seed)
  std = standard_params(k, in_features=width, width=width, depth=depth, init=net.init)
  ws, bs = layer_scales(net.init, net.sigma_w2, net.sigma_b2, in_features=width, width=width,
                        depth=depth)
  p = scale_params(std, ws, bs)
  return (jnp.concatenate([p.w_in[None], p.w]), jnp.concatenate([p.b_in[None], p.b]),
          jax.random.normal(jax.random.fold_in(k, streams.JACOBIAN_INPUT), (width,)))


@jax.jit
def _user_jacobian(weights, biases, x):
  def f(x):
    for l in range(weights.shape[0]):
      x = jnp.tanh(x @ weights[l] + biases[l])
    return x
  return jax.jacrev(f)(x)


def user_loop(key, seeds, q, net: meanfield.Network):
  """Per network of ``net`` (tanh): weights, ``jax.jacrev``, ``numpy.linalg.svd``."""
  out = []
  for seed in seeds:
    w, b, z = _network(key, seed, net)
    x = jnp.tanh(jnp.sqrt(q) * z)
    out.append(np.linalg.svd(np.asarray(_user_jacobian(w, b, x)), compute_uv=False))
  return out


def run(*, quick: bool = False) -> _common.Report:
  width, depth, seeds, loop_n = (QUICK["width"], QUICK["depth"], QUICK["seeds"], QUICK["loop"]
                                 ) if quick else (WIDTH, DEPTH, SEEDS, LOOP)
  repeats = 1 if quick else 3
  report = _common.Report(params={
      "network": f"tanh MLP, width {width}, depth {depth}", "sigma_w2": SIGMA_W2,
      "sigma_b2": SIGMA_B2, "networks": seeds, "loop timed on": f"{loop_n} networks, extrapolated",
      "dtype": "float32"})
  key = jax.random.key(0)
  net = meanfield.Network(activation="tanh", sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, depth=depth,
                          width=width)
  q = float(meanfield.q_star(net))
  call = lambda: _spectra.jacobian_spectra(  # noqa: E731
      key, network=net, n_seeds=seeds, q=q, progress=False)
  fast = report.time_call(call, name=f"jacobian_spectra, {seeds} networks", repeats=repeats)
  ds = call()
  loop_t = report.time_call(lambda: user_loop(key, range(loop_n), q, net),
                            name=f"jacrev + numpy svd loop, {loop_n} networks", repeats=repeats,
                            note="measured; first call compiles jacrev")
  slow = report.add_timing(loop_t.scaled(seeds / loop_n, name=f"loop, extrapolated to {seeds}",
                                         note=f"time per network over {loop_n} x {seeds}"))
  report.compare(f"loop / jacobian_spectra ({seeds} networks)", slow, fast)
  report.metric("jacobian_spectra: networks/s", seeds / fast.median_s, unit="1/s")
  ref = user_loop(key, [0], q, net)[0]
  ours = np.asarray(ds["singular_values"].values).reshape(-1, width)[0]
  half = width // 2
  report.metric("max relative difference of the top half of the singular values, network 0",
                float(np.max(np.abs(ours[:half] - ref[:half]) / ref[:half])),
                note="sweep vs the loop on the same weights, float32")
  return report
