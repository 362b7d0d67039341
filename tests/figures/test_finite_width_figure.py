"""The finite-width figure on a tiny plan: measured medians within 4 s.e. of theory; it draws."""

import numpy as np
import pytest

import meanfield
from figures import _common, fig_finite_width


@pytest.mark.slow
def test_finite_width_figure(tmp_path):
  plan = {16: (6, 200), 32: (5, 120)}
  ds = fig_finite_width.compute(plan)
  assert ds.median_q.dims == ("activation", "width", "layer")
  for act, (sw, sb) in fig_finite_width.SETTINGS.items():
    for width, (depth, n) in plan.items():
      sel = ds.sel(activation=act, width=width, layer=slice(1, depth))
      for name, fn in fig_finite_width.THEORY.items():
        fw = fn(q_input=1.0, depth=depth, width=width, sigma_w2=sw, sigma_b2=sb,
                activation=act)
        # s.e. of a sample median on the log scale: sqrt(pi / 2) sd / sqrt(n)
        se = np.sqrt(np.pi / 2 * np.asarray(fw.log_var, np.float64) / n)
        gap = np.abs(np.log(sel[f"median_{name}"].values)
                     - np.log(sel[f"theory_median_{name}"].values))
        assert np.all(gap < 4 * se + 1e-6), (act, width, name)
  assert np.isnan(ds.median_q.sel(width=32, layer=6)).all()   # beyond that width's depth
  paths = _common.save(fig_finite_width.draw(ds), ds, tmp_path / "finite_width")
  assert all(p.exists() for p in paths)
