"""The finite-width figure on a tiny plan: measured Var[log q^l] within 4 s.e. of theory; it draws."""

import numpy as np

from figures import _common, fig_finite_width
import pytest


@pytest.mark.slow
def test_finite_width_figure(tmp_path):
  ds = fig_finite_width.compute({16: (6, 200), 32: (5, 120)})
  assert ds.var_log_q.dims == ("activation", "width", "layer")
  # s.e. of a sample variance from the measured kurtosis (see compute)
  gap = np.abs(ds.var_log_q - ds.theory_var_log_q).values
  err = ds.var_log_q_error.values
  swept = np.isfinite(gap)                  # layers beyond a width's depth are nan
  assert swept.sum() == 2 * (6 + 5)
  assert np.all(gap[swept] < 4 * err[swept])
  paths = _common.save(fig_finite_width.draw(ds), ds, tmp_path / "finite_width")
  assert all(p.exists() for p in paths)
