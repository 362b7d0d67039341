"""figures/fig_ntk_trainability.py at toy size: xi_1, xi_* beside the trained map, and a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_ntk_trainability


@pytest.mark.slow
def test_ntk_trainability_figure_small(tmp_path):
  ds = fig_ntk_trainability.compute(depths=[2, 4], sigma_w2=np.array([0.5, 3.0]), width=8,
                                    n_seeds=2, n_steps=5, progress=False)
  fine = ds.sigma_w2_fine.values
  ordered = fine < ds.attrs["critical_sigma_w2"]
  # xi_1 is finite exactly on the ordered side, xi_* exactly on the chaotic side
  assert np.all(np.isfinite(ds.xi_1.values[ordered])) and np.all(np.isinf(ds.xi_1.values[~ordered][1:]))
  assert np.all(np.isinf(ds.xi_star.values[ordered])) and np.all(np.isfinite(ds.xi_star.values[~ordered][1:]))
  assert "k_ordered_ntk" in ds.attrs and "k_chaotic_ntk" in ds.attrs
  with _common.style():
    paths = _common.save(fig_ntk_trainability.draw(ds), ds, tmp_path / "ntk_trainability")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
