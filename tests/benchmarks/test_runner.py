"""The benchmark runner and timing helpers (smoke tests; nothing here is timed against a bound)."""

from __future__ import annotations

import json
import types

import jax.numpy as jnp
import pytest

from benchmarks import _common
from benchmarks.__main__ import discover, main, run


def _run_tiny(*, quick: bool = False) -> _common.Report:
  report = _common.Report(params={"n": 8})
  x = jnp.arange(8.0)
  fast = report.time_jitted(lambda a, *, power: a**power, x, power=2, name="jitted", repeats=3)
  slow = report.time_call(lambda: [float(v) ** 2 for v in range(8)], name="python", repeats=3)
  report.compare("python / jitted", slow, fast)
  report.metric("max abs error", 0.0, note="exact")
  return report


def _run_broken(*, quick: bool = False) -> _common.Report:
  raise RuntimeError("this benchmark is broken")


def test_time_jitted_statistics_are_ordered():
  t = _common.time_jitted(lambda a: a + 1, jnp.ones(4), name="add", repeats=4, number=2)
  assert 0 < t.min_s <= t.median_s <= t.max_s
  assert (t.repeats, t.number) == (4, 2)
  assert t.compile_s is not None and t.compile_s > 0
  with pytest.raises(ValueError, match="`repeats` must be an integer >= 1, got 0"):
    _common.time_call(lambda: None, name="x", repeats=0)


def test_run_writes_json_and_markdown_and_keeps_other_results(tmp_path, capsys):
  tiny = types.ModuleType("benchmarks.bench_tiny", "A tiny benchmark.")
  tiny.run = _run_tiny
  broken = types.ModuleType("benchmarks.bench_broken", "Broken.")
  broken.run = _run_broken
  modules = {"broken": broken, "tiny": tiny}

  failures, json_path = run(modules, outdir=tmp_path, quick=True)
  assert list(failures) == ["broken"]
  assert json_path.name.endswith("-results-quick.json")
  results = json.loads(json_path.read_text())
  entry = results["benchmarks"]["tiny"]
  assert entry["environment"]["cpu_count"] >= 1 and entry["environment"]["jax"]
  assert [t["name"] for t in entry["report"]["timings"]] == ["jitted", "python"]
  assert entry["report"]["comparisons"][0]["ratio"] > 0
  assert "this benchmark is broken" in results["benchmarks"]["broken"]["error"]
  md = json_path.with_suffix(".md").read_text()
  assert "| jitted |" in md and "python / jitted" in md and "A tiny benchmark." in md

  # A second run of one benchmark keeps the other's entry.
  failures, _ = run(modules, outdir=tmp_path, quick=True, only=["bench_tiny"])
  assert failures == {}
  assert set(json.loads(json_path.read_text())["benchmarks"]) == {"broken", "tiny"}
  with pytest.raises(ValueError, match=r"`only` must name benchmarks among \['broken', 'tiny'\]"):
    run(modules, outdir=tmp_path, only=["nope"])


def test_every_benchmark_module_follows_the_contract(capsys):
  modules = discover()
  for name, module in modules.items():
    assert not isinstance(module, Exception), f"{name} failed to import: {module!r}"
    assert callable(module.run), name
    assert module.__doc__ and module.__doc__.strip(), f"{name} has no title docstring"
  assert main(["--list"]) == 0
