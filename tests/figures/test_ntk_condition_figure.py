"""figures/fig_ntk_condition.py at toy size: its data layout, theory beside measurement, a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_ntk_condition


@pytest.mark.slow
def test_ntk_condition_figure_small(tmp_path):
  ds = fig_ntk_condition.compute(n_inputs=4, depth=12, depths=(2, 4), width=64, n_seeds=2,
                                 progress=False)
  assert ds.theory_condition.dims == ("phase", "layer") and ds.sizes["layer"] == 12
  assert ds.condition.dims == ("phase", "seed", "depth")
  t = ds.theory_condition
  # ordered: conditioning worsens with depth; chaotic: it tends to 1
  assert t.sel(phase="ordered")[-1] > t.sel(phase="ordered")[4] > 1
  assert t.sel(phase="chaotic")[-1] < t.sel(phase="chaotic")[0]
  assert np.isinf(ds.xi_star.sel(phase="ordered")) and np.isfinite(ds.xi_star.sel(phase="chaotic"))
  with _common.style():
    paths = _common.save(fig_ntk_condition.draw(ds), ds, tmp_path / "ntk_condition")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
