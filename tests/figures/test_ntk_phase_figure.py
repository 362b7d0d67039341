"""figures/fig_ntk_phase.py at toy size: its layout, the phases' signatures, and a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_ntk_phase


@pytest.mark.slow
def test_ntk_phase_figure_small(tmp_path):
  ds = fig_ntk_phase.compute(n_sigma=5, depth=30, n_train=3, n_test=2)
  assert ds.log10_condition.dims == ("sigma_w2", "layer") and ds.sizes["layer"] == 30
  ordered, chaotic = ds.isel(sigma_w2=0), ds.isel(sigma_w2=-1)
  # ordered: conditioning worsens with depth; chaotic: the predictor forgets the data
  assert ordered.log10_condition[-1] > ordered.log10_condition[5]
  assert chaotic.log10_data_dependence[-1] < chaotic.log10_data_dependence[5] - 1
  assert np.isfinite(ordered.xi_1) and np.isinf(ordered.xi_star)
  assert np.isinf(chaotic.xi_1) and np.isfinite(chaotic.xi_star)
  with _common.style():
    paths = _common.save(fig_ntk_phase.draw(ds), ds, tmp_path / "ntk_phase")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
