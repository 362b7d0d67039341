"""The empirical NTK by contraction (empirical.ntk) against materialising J; meanfield.ntk's warm time for tanh.

What is timed, on one tanh MLP (float32, 64 input features):

- ``J J^T`` of unit 0 of the last layer over all parameters: by the
  contraction :func:`empirical.tangent._one_network` uses (per-layer
  ``delta`` from one backward pass, the layer inputs' Gram matrices) against
  ``J`` materialised by ``vmap(grad)`` over the inputs and multiplied; the
  two agree (reported: the largest relative difference, in the NTK
  parametrisation of both).
- ``meanfield.ntk`` of 8 inputs through 100 tanh layers, float64, warm, on
  Mehler's series for the pair integrals (docs/ntk.md has the 2-D rule's
  time, 4.9 s, for contrast).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import meanfield
from benchmarks import _common
from empirical import models
from empirical.tangent import _one_network

SIZES = ((256, 10, 16), (512, 10, 32))     # (width, depth, inputs)
QUICK = ((16, 3, 4),)
SW, SB, N0 = 1.5, 0.1, 64


def _materialised(params, x, act, depth):
  """``J J^T`` with ``J`` over the NTK parametrisation's omega, one gradient per input."""
  scales = [math.sqrt(SW / x.shape[1]), math.sqrt(SB), math.sqrt(SW / params.width), math.sqrt(SB)]
  omega = [params.w_in / scales[0], params.b_in / scales[1], params.w / scales[2],
           params.b / scales[3]]

  def f(om, xa):
    p = models.Params(*(o * s for o, s in zip(om, scales)))
    return models.forward(p, xa[None], activation=act,
                          probe=lambda h, a, a_in: h[0, :, 0])[1][depth - 1, 0]

  jac = jax.vmap(jax.grad(f), in_axes=(None, 0))(omega, x)
  flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jac], -1)
  return flat @ flat.T


def run(*, quick: bool = False) -> _common.Report:
  sizes, repeats = (QUICK, 1) if quick else (SIZES, 3)
  report = _common.Report(params={"network": "tanh MLP", "sigma_w2": SW, "sigma_b2": SB,
                                  "in_features": N0, "sizes (width, depth, inputs)": sizes})
  act = meanfield.activation("tanh")
  for width, depth, m in sizes:
    key = jax.random.key(0)
    x = jax.random.normal(jax.random.key(1), (m, N0))
    std = models.standard_params(key, in_features=N0, width=width, depth=depth)
    ws, bs = models.layer_scales("gaussian", SW, SB, in_features=N0, width=width, depth=depth)
    params = models.scale_params(std, ws, bs)
    contraction = lambda p, x: _one_network(p, x, act, SW, SB, (depth,))["ntk"][0]  # noqa: E731
    materialised = lambda p, x: _materialised(p, x, act, depth)  # noqa: E731
    tag = f"width {width}, depth {depth}, {m} inputs"
    fast = report.time_jitted(contraction, params, x, name=f"contraction, {tag}",
                              repeats=repeats)
    slow = report.time_jitted(materialised, params, x, name=f"materialised J, {tag}",
                              repeats=repeats)
    report.compare(f"materialised / contraction, {tag}", slow, fast)
    a, b = (np.asarray(jax.jit(fn)(params, x)) for fn in (contraction, materialised))
    report.metric(f"max relative difference, {tag}", float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    report.metric(f"bytes of J, {tag}", 4.0 * m * n_params, unit="B")
  m, depth = (4, 5) if quick else (8, 100)
  with jax.enable_x64(True):
    xs = np.random.default_rng(0).normal(size=(m, 16))
    gram = jnp.asarray(xs @ xs.T / 16)
    series = report.time_call(lambda: meanfield.ntk(gram=gram, depth=depth, sigma_w2=SW,
                                                    sigma_b2=SB, activation="tanh").nngp,
                              name=f"meanfield.ntk tanh, {m} inputs, depth {depth}, series",
                              repeats=repeats)
  report.metric(f"meanfield.ntk warm seconds, tanh, {m} inputs, depth {depth}", series.median_s,
                unit="s", note="Mehler series (docs/ntk.md: 4.9 s with the 2-D rule)")
  return report
