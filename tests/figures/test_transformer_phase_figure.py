"""figures/fig_transformer_phase.py at toy size: its data layout and what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_transformer_phase as fig


@pytest.mark.slow
def test_transformer_phase_figure_small(tmp_path):
  ds = fig.compute(width=32, tokens=16, depth=3, seeds=2, betas=(0.0, 4.0), alphas=(0.5, 1.0))
  assert ds.c.dims == ("beta", "alpha", "seed") and ds.theory_c.dims == ("fine_beta",
                                                                          "fine_alpha")
  # theory: a stronger attention branch collapses more at every beta; at beta = 0 the
  # first block's attention is uniform, its entropy log T exactly
  assert np.all(np.diff(ds.theory_c.values, axis=1) >= 0)
  np.testing.assert_allclose(ds.first_entropy.isel(entropy_beta=0), np.log(16), rtol=1e-5)
  assert float(ds.first_entropy.isel(entropy_beta=-1).mean()) < 0.5 * np.log(16)
  with _common.style():
    paths = _common.save(fig.draw(ds), ds, tmp_path / "transformer_phase")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
