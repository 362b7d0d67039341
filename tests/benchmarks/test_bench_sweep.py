"""The user-script loops of the sweep benchmark measure what the sweep measures; smoke runs (slow)."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from benchmarks import bench_sweep
from empirical.sweeping import input_statistics, make_inputs
from tests.benchmarks._quick import run_quick

WIDTH, DEPTH, SIGMA_W2 = 256, 2, 1.5


def _first_layer_q_expected(x) -> tuple[float, float]:
  """q^1 = sigma_w2 q_input + sigma_b2 (Poole et al. 2016), and the spread of its estimate.

  One network's q^1 averages B N squared Gaussians h_ai with variance q^1, but the
  B inputs share the weights: across networks q^1 varies with the draw of W
  (relative spread sqrt(2/N) for the row norms) and b, so sqrt(2/N) bounds it.
  """
  q_in, _ = input_statistics(x)
  q1 = SIGMA_W2 * q_in + bench_sweep.SIGMA_B2
  return q1, q1 * math.sqrt(2.0 / WIDTH)


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["flax", "torch"])
def test_user_loops_measure_the_first_layer_length(loop):
  x = make_inputs(jax.random.key(5), n_inputs=16, in_features=WIDTH)
  networks = [(SIGMA_W2, seed) for seed in range(4)]
  kw = dict(width=WIDTH, depth=DEPTH, sigma_b2=bench_sweep.SIGMA_B2)
  if loop == "flax":
    out = bench_sweep.flax_loop(networks, x, **kw)
  else:
    torch = pytest.importorskip("torch")
    out = bench_sweep.torch_loop(torch, networks, x, **kw)
  q1 = np.array([o[0][0] for o in out])
  expected, spread = _first_layer_q_expected(x)
  # 5 standard errors of the mean of 4 networks.
  assert abs(q1.mean() - expected) < 5 * spread / 2, (q1, expected)
  for q, c, means, grad_w in out:
    assert q.shape == c.shape == means.shape == grad_w.shape == (DEPTH,)
    assert np.all(np.abs(c) <= 1) and np.all(grad_w > 0)


@pytest.mark.slow
def test_quick_runs_of_the_engine_benchmarks(tmp_path, capsys):
  names = ["machine", "sweep", "depth", "scaling", "jacobian"]
  assert run_quick(["--out", str(tmp_path), "--only", ",".join(names)]) == 0
  (json_path,) = tmp_path.glob("*-results-quick.json")
  results = json.loads(json_path.read_text())["benchmarks"]
  for name in names:
    assert "error" not in results[name], name
    assert results[name]["report"]["metrics"], name
