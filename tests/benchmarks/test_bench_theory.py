"""The theory benchmark's peer and its quick run (no timing is asserted)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import meanfield
from benchmarks import bench_theory
from tests.benchmarks._quick import run_quick


@pytest.mark.slow    # a benchmark's recipe, not a public function
def test_peer_recipe_agrees_with_meanfield_to_its_own_accuracy():
  # The Gauss-Hermite/interpolation recipe: ordered points have c* = 1 and chi_c = chi_1;
  # at a chaotic point it is close to the exact theory but not to 1e-9 (what it is there for).
  sw2, sb2 = np.array([1.0, 3.0]), np.array([0.05])
  peer = bench_theory.peer_phase_diagram(sw2, sb2, n_q=60, n_c=60, n_iter=200)
  with jax.enable_x64(True):
    q = np.asarray(meanfield.q_star(sigma_w2=sw2, sigma_b2=0.05, activation="tanh"))
    c = np.asarray(meanfield.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation="tanh").c_star)
  # 64-node Gauss-Hermite for tanh: ~3e-7 at q = 1.4 (its poles at i pi/(2 sqrt q) limit it)
  np.testing.assert_allclose(peer["q_star"][:, 0], q, rtol=1e-5)
  assert peer["c_star"][0, 0] == 1.0
  assert abs(peer["c_star"][1, 0] - c[1]) < 1e-2 and peer["c_star"][1, 0] < 1


@pytest.mark.slow  # a fresh process and the phase diagram's compile: about two minutes
def test_quick_run_writes_results(tmp_path):
  assert run_quick(["--only", "theory", "--out", str(tmp_path)]) == 0
  (json_path,) = tmp_path.glob("*-results-quick.json")
  report = json.loads(json_path.read_text())["benchmarks"]["theory"]["report"]
  metrics = {m["name"]: m["value"] for m in report["metrics"]}
  for key in ("c_star", "chi_c", "xi_c"):
    assert metrics[f"meanfield: max relative error of {key} (1 check points)"] < 1e-8
