"""The roofline benchmark: its fractions come from the counts and rates measured in the same run."""

from __future__ import annotations

import pytest

from benchmarks import _common, bench_roofline


def test_fraction_is_the_slower_bound_over_the_time():
  report = _common.Report(params={})
  # 10 GFLOP at 100 GFLOP/s is 0.1 s; 1 GB at 20 GB/s is 0.05 s: bound by matmul.
  f = bench_roofline._fraction(report, "x", 0.4, flops=10e9, n_bytes=1e9, peak=100.0,
                               bandwidth=20.0)
  assert f == pytest.approx(0.25)
  assert "bound by matmul" in report.metrics[-1].note
  f = bench_roofline._fraction(report, "y", 0.4, flops=1e9, n_bytes=4e9, peak=100.0,
                               bandwidth=20.0)
  assert f == pytest.approx(0.5) and "bound by bandwidth" in report.metrics[-1].note


@pytest.mark.slow
def test_quick_run_reports_both_fractions():
  report = bench_roofline.run(quick=True)
  names = {m.name: m.value for m in report.metrics}
  assert names["memory bandwidth"] > 0 and names["matmul 256x256"] > 0
  assert 0 < names["sweep: fraction of roofline"] and 0 < names["theory grid: fraction of roofline"]
