"""Smoke test of the NTK benchmark at its quick size (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks._quick import run_quick


@pytest.mark.slow
def test_quick_run_writes_results_and_the_two_ways_agree(tmp_path):
  assert run_quick(["--only", "ntk", "--out", str(tmp_path)]) == 0
  (json_path,) = tmp_path.glob("*-results-quick.json")
  entry = json.loads(json_path.read_text())["benchmarks"]["ntk"]
  assert entry["quick"] and "error" not in entry
  diffs = [m["value"] for m in entry["report"]["metrics"] if m["name"].startswith("max relative")]
  assert diffs and max(diffs) < 1e-5
