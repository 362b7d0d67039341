"""Smoke test of the phase-diagram benchmark at its quick size (no timing is asserted)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import bench_phase_diagram
from tests.benchmarks._quick import run_quick


def test_reference_point_matches_published_and_closed_form_facts():
  # Ordered point: c* = 1 and xi_c = -1/log chi_1; q* solves the tanh q-map (independent check
  # with the quad-based map at the returned q*, to the reference's own tolerance).
  q, c, chi_1, xi_c = bench_phase_diagram.reference_point(1.2, 0.05)
  assert c == 1.0 and chi_1 < 1.0
  assert math.isclose(xi_c, -1.0 / math.log(chi_1), rel_tol=1e-15)
  q_map = 1.2 * bench_phase_diagram._e1(lambda h: math.tanh(h) ** 2, q,
                                        bench_phase_diagram.REFERENCE_TOL) + 0.05
  assert math.isclose(q_map, q, rel_tol=1e-12)


@pytest.mark.slow  # compiling the phase diagram's solvers takes about a minute on 2 CPU cores
def test_quick_run_writes_results(tmp_path, capsys):
  assert run_quick(["--only", "phase_diagram", "--out", str(tmp_path)]) == 0
  (json_path,) = tmp_path.glob("*-results-quick.json")
  entry = json.loads(json_path.read_text())["benchmarks"]["phase_diagram"]
  assert entry["quick"] and "error" not in entry
  report = entry["report"]
  assert len(report["timings"]) == 3 and report["comparisons"][0]["ratio"] > 0
  errors = {m["name"]: m["value"] for m in report["metrics"]}
  # 64-bit theory against tight quadrature: the quick reference uses 1e-10 tolerances, so
  # agreement to 1e-8 relative is all this can check (the full run reports the real accuracy).
  for name in bench_phase_diagram.QUANTITIES:
    assert errors[f"meanfield: max relative error of {name}"] < 1e-8, name
  assert "phase_diagram" in json_path.with_suffix(".md").read_text()
